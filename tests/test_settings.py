import datetime as dt
from pathlib import Path

import pytest

from campaign_lab.settings import find_root, load_settings
from conftest import REPO


def test_repository_settings_load():
    s = load_settings(REPO, env={})
    assert s.root == REPO and s.lake_dir == REPO / "lake" and s.pipelines_dir == REPO / "nbs" / "pipelines"
    assert s.kernel_name == "python3" and isinstance(s.seed, int)


def test_relative_paths_resolve_against_root_not_cwd(project, monkeypatch, tmp_path_factory):
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    s = load_settings(project, env={})
    assert s.lake_dir == project.resolve() / "lake" and s.runs_dir == project.resolve() / "runs"


def test_every_key_can_be_overridden_by_environment(project):
    env = {"CAMPAIGN_LAB_LAKE_DIR": "other/lake", "CAMPAIGN_LAB_RUNS_DIR": "/abs/runs", "CAMPAIGN_LAB_SEED": "99",
           "CAMPAIGN_LAB_HOLDOUT_SHARE": "0.2", "CAMPAIGN_LAB_CHAIN_OPENED_AT": "2020-02-02",
           "CAMPAIGN_LAB_KERNEL_NAME": "py", "CAMPAIGN_LAB_CONTRACTS_DIR": "c", "CAMPAIGN_LAB_N_CUSTOMERS": "5",
           "CAMPAIGN_LAB_CELL_TIMEOUT": "9", "CAMPAIGN_LAB_PIPELINES_DIR": "p"}
    s = load_settings(project, env=env)
    assert s.lake_dir == project.resolve() / "other" / "lake" and s.runs_dir == Path("/abs/runs")
    assert (s.seed, s.holdout_share, s.chain_opened_at, s.kernel_name) == (99, 0.2, dt.date(2020, 2, 2), "py")
    assert (s.n_customers, s.cell_timeout) == (5, 9)


@pytest.mark.parametrize("line, words", [
    ("lake_dri = x", ["unknown key 'lake_dri'", "settings.ini"]),
    ("seed = twelve", ["key 'seed' must be an integer", "settings.ini"]),
    ("holdout_share = 1.5", ["holdout_share", "[0, 1)"]),
    ("chain_opened_at = 01/02/2019", ["key 'chain_opened_at' must be a date"]),
    ("n_customers = 0", ["n_customers", "positive"]),
])
def test_bad_file_values_name_key_and_file(project, line, words):
    path = project / "settings.ini"
    key = line.split(" =")[0]
    lines = [l for l in path.read_text().splitlines() if not l.startswith(key + " ")]
    path.write_text("\n".join(lines + [line]) + "\n")
    with pytest.raises(ValueError) as e: load_settings(project, env={})
    for w in words: assert w in str(e.value)


def test_bad_environment_values_name_the_variable(project):
    with pytest.raises(ValueError, match="environment variable CAMPAIGN_LAB_SEED: key 'seed' must be an integer"):
        load_settings(project, env={"CAMPAIGN_LAB_SEED": "x"})
    with pytest.raises(ValueError, match="CAMPAIGN_LAB_LAKEDIR: unknown settings key 'lakedir'"):
        load_settings(project, env={"CAMPAIGN_LAB_LAKEDIR": "x"})


def test_missing_key_and_section(project):
    path = project / "settings.ini"
    path.write_text(path.read_text().replace("seed = 11\n", ""))
    with pytest.raises(ValueError, match="missing key\\(s\\) seed"): load_settings(project, env={})
    path.write_text("[other]\nx = 1\n")
    with pytest.raises(ValueError, match="no \\[campaign_lab\\] section"): load_settings(project, env={})


def test_find_root(project, tmp_path_factory):
    deep = project / "a" / "b"; deep.mkdir(parents=True)
    assert find_root(deep, env={}) == project.resolve()
    assert find_root("/", env={"CAMPAIGN_LAB_ROOT": str(project)}) == project.resolve()
    with pytest.raises(FileNotFoundError, match="CAMPAIGN_LAB_ROOT"):
        find_root(tmp_path_factory.mktemp("nowhere"), env={})
