"""Configuration: validated on load, errors name the key path, secrets come from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from sync import config
from sync.config import ConfigError

ROOT = Path(__file__).resolve().parents[2]

MINIMAL = """
[connections.crm]
type = "hubspot"
token = "${HUBSPOT_TOKEN}"

[pipelines.main]
source = "crm"
destination = "crm"
"""


def test_example_config_loads_as_shipped() -> None:
    """config.example.toml is valid with an empty environment (it targets the sandbox)."""
    settings = config.load(ROOT / "config.example.toml", env={})
    assert "hubspot_scores" in settings.pipelines
    assert settings.connections["hubspot"].type == "hubspot"


def test_secret_comes_from_the_environment_and_is_never_shown(tmp_path: Path) -> None:
    """A ${VAR} secret is read from the environment and masked in every representation."""
    path = tmp_path / "c.toml"
    path.write_text(MINIMAL)
    settings = config.load(path, env={"HUBSPOT_TOKEN": "pat-na1-SECRET-123"})
    options = settings.connections["crm"].options
    assert options.token.get_secret_value() == "pat-na1-SECRET-123"  # type: ignore[attr-defined]
    for text in (repr(settings), str(settings), settings.model_dump_json()):
        assert "SECRET-123" not in text


def test_missing_environment_variable_names_key_and_variable(tmp_path: Path) -> None:
    """An unset ${VAR} is reported with the key path and the variable's name."""
    path = tmp_path / "c.toml"
    path.write_text(MINIMAL)
    with pytest.raises(ConfigError) as err:
        config.load(path, env={})
    assert "connections.crm.token: environment variable HUBSPOT_TOKEN is not set" in str(err.value)


def test_default_after_colon_dash_is_used_when_unset() -> None:
    """${VAR:-default} falls back to the default."""
    raw = {"store": {"url": "${DB:-sqlite:///x.db}"}, "connections": {"crm": {"type": "hubspot", "token": "t"}},
           "pipelines": {"main": {"source": "crm", "destination": "crm"}}}
    assert config.parse(raw, env={}).store.url == "sqlite:///x.db"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"connections": {"crm": {"type": "hubspot", "token": "t", "pagesize": 5}},
          "pipelines": {"main": {"source": "crm", "destination": "crm"}}},
         "connections.crm.pagesize: unknown key"),
        ({"connections": {"crm": {"type": "hubspot", "token": "t", "page_size": 500}},
          "pipelines": {"main": {"source": "crm", "destination": "crm"}}},
         "connections.crm.page_size: Input should be less than or equal to 200"),
        ({"connections": {"crm": {"type": "nope"}}, "pipelines": {}},
         "connections.crm.type: no connector named 'nope' is installed"),
        ({"connections": {"crm": {"type": "hubspot", "token": "t"}},
          "pipelines": {"main": {"source": "crm", "destination": "elsewhere"}}},
         "pipelines.main.destination: no connection named 'elsewhere'"),
        ({"connections": {"crm": {"type": "hubspot", "token": "t"}},
          "pipelines": {"main": {"source": "crm", "destination": "crm", "min_score_change": -1}}},
         "pipelines.main.min_score_change: Input should be greater than or equal to 0"),
        ({"store": {"url": "mysql://x"}, "connections": {"crm": {"type": "hubspot", "token": "t"}},
          "pipelines": {"main": {"source": "crm", "destination": "crm"}}},
         "store.url: Value error, must start with sqlite:/// or postgresql+psycopg://"),
        ({"scoring": {"features": {"windows": [7, -30]}}, "connections": {"crm": {"type": "hubspot", "token": "t"}},
          "pipelines": {"main": {"source": "crm", "destination": "crm"}}},
         "scoring.features.windows[1]:"),
        ({"connections": {"crm": {"type": "hubspot", "token": "t"}},
          "pipelines": {"main": {"source": "crm", "destination": "crm",
                                 "follow_up": {"subject": "Call {firstname}"}}}},
         "pipelines.main.follow_up.subject: Value error, unknown placeholder or bad braces ('firstname')"),
        ({"colour": "blue", "connections": {"crm": {"type": "hubspot", "token": "t"}},
          "pipelines": {"main": {"source": "crm", "destination": "crm"}}},
         "colour: unknown key"),
    ],
)
def test_bad_config_names_the_key_path(raw: dict[str, object], expected: str) -> None:
    """Each kind of mistake is reported with the key path and what is wrong."""
    with pytest.raises(ConfigError) as err:
        config.parse(raw, env={})
    assert expected in str(err.value)


def test_invalid_toml_is_a_clear_error(tmp_path: Path) -> None:
    """A syntax error names the file and the position."""
    path = tmp_path / "broken.toml"
    path.write_text("[store\nurl = 1")
    with pytest.raises(ConfigError) as err:
        config.load(path)
    assert "broken.toml" in str(err.value)
    assert "not valid TOML" in str(err.value)


@pytest.mark.parametrize(("question", "expected"), [
    ("target = { event = \"disposition\", negative = [\"bad_fit\"] }", "scoring.question.target.positive:"),
    ("population = { event_types = \"form_submit\" }", "scoring.question.population.event_types:"),
    ("assuming = { event_types = [\"meeting\"], within_days = 0 }", "scoring.question.assuming.within_days:"),
    ("horizon = 30", "scoring.question.horizon: unknown key"),
    ("entity = \"account\"", "scoring.question.entity:"),
])
def test_config_check_names_the_bad_question_key(tmp_path: Path, question: str, expected: str) -> None:
    """`leadrelay config check` refuses an invalid [scoring.question], naming the key path."""
    from click.testing import CliRunner

    from sync.cli import main

    path = tmp_path / "c.toml"
    path.write_text(MINIMAL + "\n[scoring.question]\n" + question + "\n")
    result = CliRunner().invoke(main, ["-c", str(path), "config", "check"], env={"HUBSPOT_TOKEN": "x"})
    assert result.exit_code == 2
    assert expected in result.output


def test_a_valid_question_and_drift_thresholds_load(tmp_path: Path) -> None:
    """[scoring.question] and [scoring.drift] load as written; warn above alert is refused."""
    path = tmp_path / "c.toml"
    path.write_text(MINIMAL + """
[scoring.question]
horizon_days = 14
population = { event_types = ["form_submit"], within_days = 2 }
assuming = { event_types = ["sales_touch"], within_days = 1 }

[scoring.drift]
warn = 0.2
alert = 0.3
""")
    settings = config.load(path, env={"HUBSPOT_TOKEN": "x"})
    assert settings.scoring.question["population"] == {"event_types": ["form_submit"], "within_days": 2}
    assert (settings.scoring.drift.warn, settings.scoring.drift.alert) == (0.2, 0.3)
    path.write_text(MINIMAL + "\n[scoring.drift]\nwarn = 0.5\nalert = 0.3\n")
    with pytest.raises(ConfigError, match=r"scoring\.drift"):
        config.load(path, env={"HUBSPOT_TOKEN": "x"})


def test_scoring_timing_table_reaches_the_feature_spec(tmp_path: Path) -> None:
    """[scoring.timing] and [scoring.fit] tech_stack load into the FeatureSpec that training and serving use."""
    from sync.serving import configured_spec

    path = tmp_path / "c.toml"
    path.write_text(MINIMAL + '\n[scoring.fit]\ntech_stack = { attribute = "technologies", wanted = ["segment"] }\n'
                    '\n[scoring.timing]\nrenewal_attribute = "renewal_date"\nusage_types = ["product_usage"]\n'
                    "usage_window_days = 14\n")
    spec = configured_spec(config.load(path, env={"HUBSPOT_TOKEN": "x"}))
    assert spec.renewal_attribute == "renewal_date"
    assert (spec.usage_types, spec.usage_window_days) == (("product_usage",), 14)
    assert spec.tech_stack is not None
    assert spec.tech_stack.wanted == ("segment",)
    assert {"tech_stack_match", "days_to_renewal", "usage_recent", "usage_change"} <= set(spec.numeric_names)


@pytest.mark.parametrize(("extra", "expected"), [
    ('[scoring.timing]\nusage_window_days = -3\n', "scoring.timing.usage_window_days: must be a positive"),
    ('[scoring.timing]\nusage_types = ["product_usage"]\n[scoring.question]\ntarget = { event = "product_usage" }\n',
     "scoring.timing.usage_types[0]: 'product_usage' is the training target"),
    ('[scoring.fit]\ntech_stack = { attribute = "technologies" }\n', "scoring.fit.tech_stack.wanted: must list"),
])
def test_bad_timing_or_tech_stack_names_the_key(tmp_path: Path, extra: str, expected: str) -> None:
    """An invalid [scoring.timing] or tech_stack setting, or a usage type that is the target, names its key."""
    path = tmp_path / "c.toml"
    path.write_text(MINIMAL + "\n" + extra)
    with pytest.raises(ConfigError) as err:
        config.load(path, env={"HUBSPOT_TOKEN": "x"})
    assert expected in str(err.value)
