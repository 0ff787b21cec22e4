"""infra/ENVIRONMENT.md documents exactly the settings that exist, as the generator writes them."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path
from typing import Literal

import pytest
from pydantic import Field

from app.settings import Settings
from tests.infra.helpers import ROOT, load_infra_script

gen = load_infra_script("gen_environment")
DOC = ROOT / "infra" / "ENVIRONMENT.md"


class _WithExtra(Settings):
    shiny_new_setting: int = Field(default=3, ge=2, description="Added by someone later.")


def _doc() -> str:
    return DOC.read_text(encoding="utf-8")


def test_committed_document_is_what_the_generator_writes():
    current = _doc()
    assert gen.render(current, Settings) == current, (
        f"infra/ENVIRONMENT.md is out of date with app/settings.py; run: {gen.REGENERATE}"
    )


def test_every_setting_is_documented_and_every_documented_one_exists():
    documented = gen.documented_variables(_doc())
    undocumented, unknown = gen.compare(documented, gen.settings_variables(Settings))
    assert not undocumented, (
        f"settings missing from infra/ENVIRONMENT.md: {sorted(undocumented)}; run: {gen.REGENERATE}"
    )
    assert not unknown, f"infra/ENVIRONMENT.md documents unknown variables: {sorted(unknown)}"
    assert len(gen.documented_variables(_doc())) == len(Settings.model_fields)


def test_prose_names_only_variables_that_exist():
    # The hand-written parts (production checklist, precedence) must not drift either.
    named = gen.mentioned_variables(_doc())
    assert {"HITMAP_SECRET_KEY", "HITMAP_TRUSTED_PROXIES", "HITMAP_BASE_URL"} <= named
    assert named - gen.settings_variables(Settings) == set()


def test_comparison_reports_a_setting_nobody_documented():
    undocumented, unknown = gen.compare(
        gen.documented_variables(_doc()), gen.settings_variables(_WithExtra)
    )
    assert undocumented == {"HITMAP_SHINY_NEW_SETTING"} and unknown == set()
    # ... and the committed-file check fails for it too, naming the command to run.
    assert gen.render(_doc(), _WithExtra) != _doc()


def test_comparison_reports_a_documented_variable_that_is_gone():
    row = next(line for line in _doc().splitlines() if line.startswith("| `HITMAP_PORT` |"))
    stale = _doc().replace(row, row + "\n" + row.replace("HITMAP_PORT", "HITMAP_OLD_PORT"))
    undocumented, unknown = gen.compare(
        gen.documented_variables(stale), gen.settings_variables(Settings)
    )
    assert undocumented == set() and unknown == {"HITMAP_OLD_PORT"}

    without = _doc().replace(row + "\n", "")
    undocumented, unknown = gen.compare(
        gen.documented_variables(without), gen.settings_variables(Settings)
    )
    assert undocumented == {"HITMAP_PORT"} and unknown == set()


def test_rows_carry_type_default_bounds_and_description():
    rows = {row[0]: row for row in gen.settings_rows(_WithExtra)}
    assert rows["`HITMAP_SHINY_NEW_SETTING`"] == (
        "`HITMAP_SHINY_NEW_SETTING`",
        "integer",
        "`3`",
        "≥ 2",
        "Added by someone later.",
    )
    port = rows["`HITMAP_PORT`"]
    assert port[1:4] == ("integer", "`8000`", "≥ 1; ≤ 65535")
    # Computed defaults are machine-independent, so the committed file is the same everywhere.
    assert rows["`HITMAP_DATA_DIR`"][2] == "`./hitmap-data`"
    assert rows["`HITMAP_GEOIP_PATH`"][2] == "`<site-packages>/_geoip_geolite2/GeoLite2-City.mmdb`"
    assert rows["`HITMAP_TRUSTED_PROXIES`"][1:3] == ("comma-separated list", "empty")
    assert rows["`HITMAP_NIGHTLY_AT`"][2:4] == ("`03:00`", "format checked at start-up")
    assert rows["`HITMAP_DATABASE_URL`"][1:3] == ("string, optional", "unset")


def test_type_names():
    assert gen.describe_type(Literal["text", "json"]) == "one of `text`, `json`"
    assert gen.describe_type(int | None) == "integer, optional"
    assert gen.describe_type(dt.time) == "time of day `HH:MM`"
    assert gen.describe_type(list[str]) == "JSON list"
    assert gen.describe_type(list[str], comma_list=True) == "comma-separated list"


def test_cells_keep_angle_brackets_visible_and_columns_intact():
    assert gen._cell("in <data dir>/x | y `<a>`") == "in &lt;data dir&gt;/x \\| y `<a>`"


def test_a_setting_without_description_stops_the_generator():
    class Undescribed(Settings):
        mystery: int = 1

    with pytest.raises(gen.GeneratorError, match=r"Settings\.mystery has no description"):
        gen.settings_rows(Undescribed)


def test_check_and_write_on_a_stale_copy(tmp_path, monkeypatch, capsys):
    stale = tmp_path / "ENVIRONMENT.md"
    row = next(line for line in _doc().splitlines() if line.startswith("| `HITMAP_PORT` |"))
    stale.write_text(_doc().replace(row + "\n", ""), encoding="utf-8")
    monkeypatch.setattr(gen, "DOC_PATH", stale)

    assert gen.main(["--check"]) == 1
    assert gen.REGENERATE in capsys.readouterr().out
    assert gen.main(["--write"]) == 0
    assert stale.read_text(encoding="utf-8") == _doc()
    assert gen.main(["--check"]) == 0


def test_missing_markers_are_an_error(tmp_path, monkeypatch, capsys):
    broken = tmp_path / "ENVIRONMENT.md"
    broken.write_text(_doc().replace(gen.END, ""), encoding="utf-8")
    monkeypatch.setattr(gen, "DOC_PATH", broken)
    assert gen.main(["--check"]) == 2
    assert "must contain each marker once" in capsys.readouterr().err


def test_runs_as_a_script_from_the_repository_root():
    result = subprocess.run(
        [sys.executable, str(Path("infra") / "gen_environment.py"), "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
