from __future__ import annotations

import pytest

from x0node.web.config import WebConfig
from x0node.web.provider import ConfigError


def test_defaults_and_values():
    assert WebConfig.from_mapping({}) == WebConfig()
    c = WebConfig.from_mapping({"listen": "::", "port": 0, "metrics_allow": ["10.0.0.0/8"], "session_idle_s": 120})
    assert c.port == 0 and c.metrics_allow == ("10.0.0.0/8",) and c.session_idle_s == 120.0


@pytest.mark.parametrize("section,key", [
    ({"port": 70000}, "web.port"), ({"port": True}, "web.port"), ({"listen": "localhost"}, "web.listen"),
    ({"metrics_allow": ["nope"]}, "web.metrics_allow"), ({"metrics_allow": "127.0.0.1"}, "web.metrics_allow"),
    ({"session_idle_s": 1}, "web.session_idle_s"), ({"colour": "red"}, "web.colour"), ({"enabled": "yes"}, "web.enabled"),
])
def test_errors_name_the_key(section, key):
    with pytest.raises(ConfigError) as exc:
        WebConfig.from_mapping(section)
    assert exc.value.key == key
