"""The Debian archive as a package source, unprivileged, like ``apt-get install`` into the store.

:mod:`.sources` reads the machine's apt sources, :mod:`.release` fetches and
verifies ``InRelease`` with ``gpgv``, :mod:`.indexes` fetches and reads the
``Packages`` indexes it vouches for, :mod:`.resolve` picks the packages a
request needs, and :mod:`.fetch` downloads them, verified, into the store.
Everything is cached in cpk's own cache (``context.Bucket.DEBIAN``); apt's
lists, lock and cache are never read or written.
"""
