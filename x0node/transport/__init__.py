"""Anti-censorship transports for mesh links over hostile uplinks.

Shadowsocks AEAD (SIP004/SIP007) and 2022 (SIP022) codecs, a bounded replay filter, FakeTLS
framing, domain fronting, traffic shaping and a TAP tunnel that carries a mesh link over one
obfuscated TCP stream. Codec modules are sans-I/O; `relay`, `tap`, `tunnel` and `fronting` hold
the asyncio/kernel adapters. See docs/transport.md.
"""
