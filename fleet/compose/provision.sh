#!/bin/sh
# Compose provisioning: one trust anchor (kept on the `trust` volume), a key and a certificate per node.
# Keys that exist are kept, so a re-run certifies the same node ids.
set -eu
[ -f /trust/anchor.key ] || x0node keys anchor --out /trust/anchor.key
for dir in /nodes/*; do
    name=$(basename "$dir")
    role=node
    [ "$name" = node-3 ] && role=gateway
    [ -f "$dir/node.key" ] || x0node keys generate --out "$dir/node.key"
    x0node keys sign --anchor /trust/anchor.key --node-key "$dir/node.key" --role "$role" --out "$dir/node.cert"
    cp /trust/anchor.pub "$dir/anchor.pub"
    chmod 700 "$dir"
done
