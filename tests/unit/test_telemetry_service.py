import pytest

from x0node.daemon.config import ConfigError
from x0node.telemetry import service


def test_defaults_filled():
    cfg = service.validate_config({})
    assert cfg["xdp_mode"] == "auto" and cfg["epsilon"] == 1.0 and cfg["interval_s"] == 5.0


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"xdp_mode": "fast"}, "xdp_mode"),
        ({"interval_s": 0}, "interval_s"),
        ({"interval_s": True}, "interval_s"),
        ({"epsilon": -1}, "epsilon"),
        ({"epsilon": "x"}, "epsilon"),
        ({"peers_max": 100000}, "peers_max"),
        ({"xdp": "yes"}, "xdp"),
        ({"colour": 1}, "colour"),
    ],
)
def test_bad_values_name_the_key(section, key):
    with pytest.raises(ConfigError) as exc:
        service.validate_config(section)
    assert exc.value.key == key


def test_epsilon_zero_means_exact():
    svc = service.TelemetryService({"epsilon": 0})
    assert svc.epsilon is None
    assert svc.snapshot()["bpf"] is False
