"""Key, certificate and revocation-list files: arbitrary content raises only KeyFileError."""

import os
import tempfile

from hypothesis import given, settings
from hypothesis import strategies as st

from x0node.proto import keyfile

LOADERS = [
    keyfile.load_node_key,
    keyfile.load_anchor_key,
    keyfile.load_anchor_public,
    keyfile.load_certificate,
    keyfile.load_revocations,
]
HEADERS = [
    keyfile.NODE_KEY_HEADER,
    keyfile.ANCHOR_KEY_HEADER,
    keyfile.ANCHOR_PUB_HEADER,
    keyfile.CERT_HEADER,
    keyfile.CRL_HEADER,
]


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(HEADERS), st.one_of(st.binary(max_size=300), st.text(max_size=300)), st.booleans())
def test_arbitrary_file_content_raises_only_key_file_error(header, body, with_header):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "f")
        data = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
        if with_header:
            data = header.encode() + b"\n" + data
        with open(path, "wb") as f:
            f.write(data)
        os.chmod(path, 0o600)
        for load in LOADERS:
            try:
                load(path)
            except keyfile.KeyFileError:
                pass
