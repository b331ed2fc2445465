"""Private overlay: end-to-end encryption between mesh addresses, NAT traversal, yggdrasil interop.

Sans-I/O cores (`handshake`, `channel`, `policy`, `punch`, `yggdrasil_config`) take `now` and an rng
and return what to send; adapters (`datapath`, `natlink`, `yggdrasil`) move the bytes. See
docs/overlay.md.
"""
