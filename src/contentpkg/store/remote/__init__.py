"""Remote stores: entries shared through an OCI registry, signed.

``oci`` is the distribution API client, ``layout`` how an entry maps to a
manifest, config and layer, ``signing`` the ed25519 keys and signatures,
``remotes`` the configured list, ``pull`` the reader that brings entries
into the user store, ``push`` the writer, ``substitute`` the hook the
namespaces call before their own sources.
"""
