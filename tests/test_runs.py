"Runs through the Python API: success, failure, refusal, index."
import json
from pathlib import Path

import nbformat
import polars as pl
import pytest
import yaml

from campaign_lab.lake import read_table, table_versions
from campaign_lab.execute import execute
from campaign_lab.pipelines import PipelineError, notebook_parameters
from campaign_lab.records import list_runs
from conftest import REPO

MANIFEST_FIELDS = {"run_id", "pipeline", "status", "started_at", "ended_at", "duration_s", "git", "code", "packages", "seed",
                   "parameters", "inputs", "outputs", "artefacts", "metrics", "headline_metrics", "error", "notebook"}


@pytest.fixture(scope="module")
def synth_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("proj")
    from conftest import SETTINGS
    (root / "settings.ini").write_text(SETTINGS.format(pipelines=REPO / "nbs" / "pipelines", contracts=REPO / "data_contracts"))
    for d in ("lake", "runs"): (root / d).mkdir(exist_ok=True)   # what `campaign-lab init` makes
    return root, execute("synth", {"n_customers": 3000, "seed": 5}, root=root)


def test_successful_run_folder(synth_run):
    root, res = synth_run
    assert res.ok and res.run_dir.parent == root / "runs" and res.run_id.endswith(res.run_id[-6:])
    assert {"manifest.json", "params.yaml", "metrics.json", "report.ipynb", "report.html"} <= {p.name for p in res.run_dir.iterdir()}
    m = json.loads((res.run_dir / "manifest.json").read_text())
    assert MANIFEST_FIELDS <= set(m) and m["status"] == "succeeded" and m["error"] is None
    assert m["seed"] == 5 and m["parameters"]["n_customers"] == 3000
    assert {"python", "polars", "numpy", "papermill", "campaign_lab"} <= set(m["packages"])
    assert set(m["git"]) == {"commit", "dirty"}
    from campaign_lab.execute import code_fingerprint
    assert m["code"] == code_fingerprint() and m["git"]["commit"] is None        # a project outside git: the library's files say which code ran
    assert "(not a git checkout)" in (res.run_dir / "report.html").read_text() and m["code"][:19] in (res.run_dir / "report.html").read_text()
    params = yaml.safe_load((res.run_dir / "params.yaml").read_text())
    assert params == m["parameters"] and params["project_root"] == str(root.resolve())
    written = {o["table"]: o for o in m["outputs"]}
    assert set(written) == {"customers", "transactions"}                    # the world's truth stays in its folder
    assert {Path(f["file"]).parent.name for f in m["input_files"]} == {"customers", "orders"}   # the inbox exports, fingerprinted
    assert (root / "world" / "customer_truth.parquet").exists() and not (root / "lake" / "customer_truth").exists()
    for name, o in written.items():
        v = table_versions(root / "lake", name)[-1]
        assert (v.fingerprint, v.run_id, v.rows) == (o["fingerprint"], res.run_id, o["rows"])
    assert read_table(root / "lake", "customers").height == 3000
    metrics = json.loads((res.run_dir / "metrics.json").read_text())
    assert metrics == m["metrics"] and metrics["n_customers"] == 3000
    assert m["headline_metrics"] == ["n_customers", "n_transactions", "revenue"]


def test_report_has_no_code_and_embeds_figures(synth_run):
    _, res = synth_run
    page = (res.run_dir / "report.html").read_text()
    assert "synth run: SUCCEEDED" in page and "Behaviour mix" in page
    assert page.count("data:image/png;base64") >= 3
    for code in ("open_run(", "import polars", "generate_chain(", "plt.subplots"):
        assert code not in page


def test_index_lists_runs(synth_run):
    root, res = synth_run
    index = json.loads((root / "runs" / "index.json").read_text())
    assert index[0]["run_id"] == res.run_id and index[0]["headline"]["n_customers"] == 3000
    page = (root / "runs" / "index.html").read_text()
    assert f'href="{res.run_id}/report.html"' in page and "succeeded" in page


def test_rerun_reuses_identical_tables_in_a_new_folder(synth_run):
    root, first = synth_run
    again = execute("synth", {"n_customers": 3000, "seed": 5}, root=root)
    assert again.ok and again.run_dir != first.run_dir
    assert again.manifest["outputs"] == [] and again.manifest["metrics"]["orders_added"] == 0   # the same world: nothing new
    assert len(table_versions(root / "lake", "transactions")) == 1
    assert len(list_runs(root / "runs")) >= 2


def test_failed_run_keeps_partial_notebook_and_report(project):
    res = execute("synth", {"n_customers": 0}, root=project)
    assert res.status == "failed"
    m = json.loads((res.run_dir / "manifest.json").read_text())
    assert m["status"] == "failed" and m["error"]["ename"] == "ValueError" and "n_customers" in m["error"]["evalue"]
    nb = nbformat.read(res.run_dir / "report.ipynb", as_version=4)
    assert any(o.get("output_type") == "error" for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    page = (res.run_dir / "report.html").read_text()
    assert "synth run: FAILED" in page and "The run failed" in page and "n_customers must be a positive integer" in page
    assert page.index("The run failed") < page.index("Parameters")
    assert not (project / "lake").exists() or table_versions(project / "lake", "customers") == []


def test_bad_parameters_are_refused_before_any_kernel(project, monkeypatch):
    import papermill
    def no_kernel(*a, **k): raise AssertionError("papermill must not be called")
    monkeypatch.setattr(papermill, "execute_notebook", no_kernel)
    cases = [({"n_customer": 10}, "has no parameter(s) n_customer"),
             ({"n_customers": "10"}, "parameter 'n_customers' must be int, got str"),
             ({"seed": 1.5}, "parameter 'seed' must be int"),
             ({"run_dir": "/tmp/x"}, "set by the runner")]
    for params, words in cases:
        with pytest.raises(PipelineError, match=words.replace("(", r"\(").replace(")", r"\)")):
            execute("synth", params, root=project)
    with pytest.raises(PipelineError, match="no pipeline 'synt'"): execute("synt", root=project)
    assert not any((project / "runs").iterdir())   # no run folder was made


def test_notebook_without_parameters_tag_is_refused(project, tmp_path):
    pipes = tmp_path / "pipes"; pipes.mkdir()
    nb = nbformat.read(REPO / "nbs" / "pipelines" / "synth.ipynb", as_version=4)
    for c in nb.cells: c.metadata.pop("tags", None)
    nbformat.write(nb, pipes / "untagged.ipynb")
    (project / "settings.ini").write_text((project / "settings.ini").read_text().replace(
        str(REPO / "nbs" / "pipelines"), str(pipes)))
    with pytest.raises(PipelineError, match="no cell is tagged 'parameters'"): execute("untagged", root=project)
    with pytest.raises(PipelineError, match="no cell is tagged"): notebook_parameters(pipes / "untagged.ipynb")


def test_parameters_cell_must_be_typed_literals(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 5\n", metadata={"tags": ["parameters"]})])
    nbformat.write(nb, tmp_path / "a.ipynb")
    with pytest.raises(PipelineError, match="not of the form"): notebook_parameters(tmp_path / "a.ipynb")
    nb.cells[0].source = "x: int = len('ab')  # computed"
    nbformat.write(nb, tmp_path / "a.ipynb")
    with pytest.raises(PipelineError, match="needs a literal default"): notebook_parameters(tmp_path / "a.ipynb")
    nb.cells[0].source = "x: set = {1}  # a set"
    nbformat.write(nb, tmp_path / "a.ipynb")
    with pytest.raises(PipelineError, match="has type set"): notebook_parameters(tmp_path / "a.ipynb")


def test_run_folder_is_never_reused(project, monkeypatch):
    (project / "runs" / "fixed_id").mkdir(parents=True)
    (project / "runs" / "fixed_id" / "keep.txt").write_text("earlier work")
    with pytest.raises(FileExistsError): execute("synth", {"n_customers": 100}, root=project, run_id="fixed_id")
    assert (project / "runs" / "fixed_id" / "keep.txt").read_text() == "earlier work"


def test_repository_pipelines_declare_documented_parameters():
    for nb in (REPO / "nbs" / "pipelines").glob("*.ipynb"):
        spec = notebook_parameters(nb)
        assert {"project_root", "run_dir"} <= set(spec), nb.name
        assert all(p.description for p in spec.values()), nb.name
        assert nbformat.read(nb, as_version=4).metadata["kernelspec"]["name"] == "python3"


def test_closed_set_parameters_are_refused_before_a_kernel_starts(project):
    with pytest.raises(PipelineError, match="parameter 'engine' must be one of 'default', 'polars', 'spark', got 'dask'"):
        execute("wave", {"engine": "dask"}, root=project)
    with pytest.raises(PipelineError, match="parameter 'conversions' must be one of 'crm', 'orders'"):
        execute("feedback", {"conversions": "ftp"}, root=project)
    assert not any((project / "runs").iterdir())   # no run folder was made


def test_a_closed_set_must_be_written_as_bare_words(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell('x: Literal["a", "b"] = "a"  # quoted', metadata={"tags": ["parameters"]})])
    nbformat.write(nb, tmp_path / "a.ipynb")
    with pytest.raises(PipelineError, match="string of bare words"): notebook_parameters(tmp_path / "a.ipynb")
    nb.cells[0].source = 'x: "Literal[a, b]" = "c"  # not in the set'
    nbformat.write(nb, tmp_path / "a.ipynb")
    with pytest.raises(PipelineError, match="default 'c' is not one of 'a', 'b'"): notebook_parameters(tmp_path / "a.ipynb")


def test_runs_with_warm_kernels_match_cold_runs_and_survive_a_dead_kernel(project):
    import os, signal, time
    from campaign_lab.execute import KernelPool
    from campaign_lab.settings import load_settings
    cold = execute("synth", {"n_customers": 800, "seed": 2}, root=project)
    settings = load_settings(project, env={})
    with KernelPool(settings) as pool:
        first = execute("variants", root=project, kernels=pool)            # a kernel that imported ahead
        os.kill(pool.waiting[0].pid, signal.SIGKILL)                         # the next one dies while it waits
        time.sleep(0.5)
        second = execute("variants", root=project, kernels=pool)           # ... and is replaced by a cold start
    assert cold.ok and first.ok and second.ok, (first.manifest["error"], second.manifest["error"])
    same = lambda m: {k: v for k, v in m.items() if k not in ("added", "removed", "changed", "kept")}   # the diff against the previous run
    assert same(first.manifest["metrics"]) == same(second.manifest["metrics"]) and second.manifest["metrics"]["added"] == 0
    assert 0.05 < first.manifest["kernel_peak_gb"] < 4
    assert pool.waiting == []


def test_open_run_without_a_project_root_says_how_to_pass_one(monkeypatch):
    from campaign_lab.context import open_run
    monkeypatch.delenv("CAMPAIGN_LAB_ROOT", raising=False)
    with pytest.raises(PipelineError, match="project_root is empty; pass it as a parameter"): open_run("", "", "wave")
