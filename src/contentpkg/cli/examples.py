"""One example per command, shown at the end of its ``--help``.

Kept in one table so that a test can hold every command to having one.
Keys are the command as typed after ``cpk``.
"""

from __future__ import annotations

EXAMPLES: dict[str, str] = {
    "store": "cpk store ls 'numpy*'",
    "store add": "cpk store add ./jq_1.7.1-3_amd64.deb",
    "store ls": "cpk store ls 'lib*' --json",
    "store path": "cpk store path jq,1.7.1",
    "store info": "cpk store info requests",
    "store verify": "cpk store verify",
    "store gc": "cpk store gc --dry-run",
    "store push": (
        "cpk store push oci://registry.example.com/team --lock pylock.toml"
        " --sign-key ~/.config/cpk/ci.key"
    ),
    "store pull": "cpk store pull oci://registry.example.com/team requests,2.32.3",
    "store du": "cpk store du",
    "lock": "cpk lock --upgrade-package requests",
    "sync": "cpk sync --locked",
    "fetch": "cpk fetch --deb graphviz",
    "run": "cpk run --with rich python -c 'import rich'",
    "shell": "cpk shell",
    "init": "cpk init myapp --app",
    "add": "cpk add 'httpx>=0.27' --group test",
    "remove": "cpk remove httpx",
    "tree": "cpk tree --invert idna",
    "export": "cpk export --format requirements.txt --group test > requirements.txt",
    "install": "cpk install jq ~/tools",
    "uninstall": "cpk uninstall jq --from ~/tools",
    "identify": "cpk identify /usr/lib/x86_64-linux-gnu/libonig.so.5",
    "ldd": "cpk ldd ~/tools/bin/jq",
    "profile": "cpk profile generations",
    "profile list": "cpk profile list",
    "profile generations": "cpk profile generations default --json",
    "profile switch": "cpk profile switch 3",
    "profile rollback": "cpk profile rollback",
    "profile delete-generations": "cpk profile delete-generations --older-than 30d",
    "env": 'eval "$(cpk env)"',
    "exec": "cpk exec ~/tools -- jq --version",
    "path": "cpk path add ~/tools/bin",
    "path add": "cpk path add ~/tools/bin --shell zsh",
    "cache": "cpk cache dir",
    "cache dir": "cpk cache dir",
    "cache clean": "cpk cache clean",
    "cache prune": "cpk cache prune",
    "completion": "cpk completion bash > ~/.local/share/bash-completion/completions/cpk",
    "help": "cpk help add",
    "enter": "cpk enter --deb groff -- groff -man -Tps page.1",
    "key": "cpk key generate ~/.config/cpk/ci.key",
    "key generate": "cpk key generate ~/.config/cpk/ci.key",
    "key trust": "cpk key trust ci.key.pub",
    "key list": "cpk key list",
    "remote": "cpk remote list",
    "remote add": "cpk remote add team oci://registry.example.com/team",
    "remote list": "cpk remote list",
    "remote remove": "cpk remote remove team",
}
