"""image.advisories without a network: lock parsing, Debian version order, what counts as outdated."""

from __future__ import annotations

from image import advisories
from image.lock import Lock


def test_python_pins_are_normalised():
    pins = advisories.python_pins("PyNaCl==1.6.2\nbackports.strenum==1.2.8\n# comment\nfoo>=1\n")
    assert pins == {"pynacl": "1.6.2", "backports-strenum": "1.2.8"}


def test_debian_version_order():
    assert advisories.newer("3.0.17-1~deb12u3", "3.0.17-1~deb12u2")
    assert advisories.newer("1:1.0-1", "2.0-1")  # an epoch wins
    assert advisories.newer("1.0-1", "1.0-1~deb12u1")  # ~ sorts before anything
    assert not advisories.newer("1.0-1", "1.0-1")


def test_outdated_packages_are_named():
    lock = Lock("x86_64", "amd64", (), {"libssl3:amd64": "3.0.17-1~deb12u2", "tzdata": "2025b-0+deb12u1",
                                        "bash:amd64": "5.2.15-2+b8"}, 0)
    index = {"amd64": {"libssl3": "3.0.17-1~deb12u3", "tzdata": "2025b-0+deb12u1", "other": "9"}}
    assert advisories.outdated(lock, index) == [
        {"package": "libssl3:amd64", "locked": "3.0.17-1~deb12u2", "security": "3.0.17-1~deb12u3"}]
    index["amd64"]["libssl3"] = "3.0.17-1~deb12u2"
    assert advisories.outdated(lock, index) == []
