"""``cpk completion SHELL``: each script is loaded by the real shell and
completes a subcommand and an option."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from support.cli import run_cpk


def _script(shell: str, tmp_path: Path) -> Path:
    proc = run_cpk("completion", shell, check=True)
    assert proc.stderr == ""
    path = tmp_path / {"bash": "cpk.bash", "zsh": "_cpk", "fish": "cpk.fish"}[shell]
    path.write_text(proc.stdout)
    return path


def _need(shell: str) -> str:
    found = shutil.which(shell)
    if found is None:
        pytest.skip(f"{shell} is not installed (.ci/run installs it)")
    return found


def _shell(argv: list[str]) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_bash_completes_a_command_and_an_option(tmp_path: Path) -> None:
    script = _script("bash", tmp_path)
    # The function bash would call on TAB, with the words as bash sets them.
    program = f"""
source {script}
f=$(complete -p cpk | sed 's/.*-F \\([^ ]*\\) .*/\\1/')
COMP_WORDS=(cpk sto); COMP_CWORD=1; $f cpk sto cpk
printf '%s\\n' "${{COMPREPLY[@]}}"; echo ---
COMP_WORDS=(cpk store ls --js); COMP_CWORD=3; $f cpk --js ls
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    out = _shell([_need("bash"), "--norc", "-c", program])
    assert out == "store\n---\n--json\n"


# An interactive zsh in a pseudo-terminal, TAB typed, and every candidate
# the completion system adds printed (compadd wrapped), as a user's zsh runs it.
# The next line is typed only once the first candidate is out: zle skips a
# completion when it finds typeahead, which a loaded machine made likely.
_ZSH_CAPTURE = r"""
zmodload zsh/zpty || exit 3
zpty z zsh -f -i
zpty -w z "PROMPT='' RPROMPT=''"
zpty -w z "fpath=($1 \$fpath); autoload -U compinit; compinit -u -D"
zpty -w z "source $3"
zpty -w z 'bindkey "^I" complete-word; setopt no_beep no_list_beep'
zpty -w z "print -r -- READY"
zpty -r z line '*READY*'
zpty -w -n z "$2"$'\t'
zpty -r z first '*CAND:*'
zpty -w z $'\x15print -r -- DO""NE'
zpty -r z out '*DONE*'
print -r -- "$first$out" | tr -d '\r' | grep -a '^CAND:' | sort -u
zpty -d z
"""

# Sourced in that zsh: compadd, wrapped to print what it adds (-O/-A/-D
# only fill arrays for the caller, and are passed through).
_ZSH_COMPADD = r"""
compadd () {
    if [[ ${@[1,(i)(-|--)]} == *-(O|A|D)\ * ]]; then
        builtin compadd "$@"
        return $?
    fi
    typeset -a __hits
    builtin compadd -A __hits "$@"
    (( $#__hits )) || return 1
    print -n "\n"
    for h in $__hits; do print -r -- "CAND:$h"; done
    builtin compadd "$@"
}
"""


def test_zsh_completes_a_command_and_an_option(tmp_path: Path) -> None:
    script = _script("zsh", tmp_path)
    capture = tmp_path / "capture.zsh"
    capture.write_text(_ZSH_CAPTURE)
    wrapper = tmp_path / "compadd.zsh"
    wrapper.write_text(_ZSH_COMPADD)
    zsh = _need("zsh")

    def complete(line: str) -> str:
        return _shell([zsh, "-f", str(capture), str(script.parent), line, str(wrapper)])

    command = complete("cpk sto")
    assert command.split() == ["CAND:store"]
    option = complete("cpk store ls --js")
    assert option.split() == ["CAND:--json"]


def test_fish_completes_a_command_and_an_option(tmp_path: Path) -> None:
    script = _script("fish", tmp_path)
    fish = _need("fish")

    def complete(line: str) -> str:
        return _shell([fish, "--no-config", "-c", f"source {script}; complete -C '{line}'"])

    command = complete("cpk sto")
    assert [line.split("\t")[0] for line in command.splitlines()] == ["store"]
    option = complete("cpk store ls --js")
    assert [line.split("\t")[0] for line in option.splitlines()] == ["--json"]


def test_completion_refuses_other_shells() -> None:
    proc = run_cpk("completion", "tcsh")
    assert proc.returncode == 2 and "invalid choice: 'tcsh'" in proc.stderr
