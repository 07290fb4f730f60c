"""`popplast lineage`: the family tree read from MLflow alone, and a real browser following it to MLflow."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time

import pytest
from mlflow import MlflowClient

import popplast
from popplast.cli.main import main
from popplast.reports.lineage import draw_lineage, read_lineage
from tests.helpers import TINY_SPEC, individuals, write_spec

BIN = os.path.dirname(sys.executable)
CHROMIUM = shutil.which("chromium")
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
]


def test_lineage_is_read_from_mlflow_and_drawn(tiny_spec, tracking_uri, tmp_path):
    result = popplast.run(tiny_spec, executor="local", tracking_uri=tracking_uri, progress=False)
    client = MlflowClient(tracking_uri)
    lineage = read_lineage(client, result.search_run_id)
    assert len(lineage.nodes) == 12 and lineage.best_id == result.best.id
    ancestry = lineage.ancestry()
    assert result.best.id in ancestry and all(
        lineage.nodes[p].generation < lineage.nodes[result.best.id].generation for p in ancestry - {result.best.id}
    )
    # popplast run already attached both files; drawing again here writes them locally
    artifacts = {a.path for a in client.list_artifacts(result.search_run_id)}
    assert {"lineage.html", "lineage.png"} <= artifacts and os.path.isfile(result.lineage_html)
    assert popplast.lineage is draw_lineage  # the Python API mirrors `popplast lineage`
    html_path, png_path = popplast.lineage(tracking_uri, result.search_run_id, str(tmp_path / "out"), log=False)
    page = open(html_path, encoding="utf-8").read()
    assert page.count('<a class="node"') == 12 and page.count('class="edge') >= 8
    loads = ("src=", "<link", "@import", "fetch(", "XMLHttpRequest", "import(")
    assert not any(tag in page for tag in loads)  # self-contained: the page loads nothing
    with open(png_path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_browser_follows_a_node_to_its_run_in_a_real_mlflow_server(tiny_spec, tmp_path, mlflow_server, capfd):
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: `make test` installs Debian's chromium package when run as root")
        pytest.skip("chromium is not installed (make test installs it when run as root)")
    from playwright.sync_api import sync_playwright

    result = popplast.run(tiny_spec, executor="local", generations=2, tracking_uri=mlflow_server, progress=False)
    # MLflow's client prints two lines (and asks the server once more) for every run it terminates on a server
    # unless told not to: none (the search run's end is journalled too; popplast's summary links the runs)
    assert re.findall(r"View run (\S+)", capfd.readouterr().out) == []
    out = subprocess.run(
        [
            os.path.join(BIN, "popplast"),
            "lineage",
            result.search_run_id,
            "--tracking-uri",
            mlflow_server,
            "--out",
            str(tmp_path / "tree"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    client = MlflowClient(mlflow_server)
    runs = client.search_runs([result.experiment_id], f"tags.mlflow.parentRunId = '{result.search_run_id}'")
    with sync_playwright() as p:
        # launch() gives the browser a fresh, temporary profile (the fresh --user-data-dir the flags need)
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            page = browser.new_page()
            page.goto(f"file://{tmp_path / 'tree' / 'lineage.html'}")
            nodes = page.locator("a.node")
            assert nodes.count() == len(runs) == 8
            assert {nodes.nth(i).get_attribute("data-run") for i in range(nodes.count())} == {
                r.info.run_id for r in runs
            }
            target = nodes.nth(nodes.count() - 1)
            run_id, individual = target.get_attribute("data-run"), target.get_attribute("data-individual")
            target.locator("circle").click()  # focuses it; its details link to its run
            assert page.locator("#tree").get_attribute("data-focus") == individual
            page.locator("#run-link").click()
            page.wait_for_url(f"{mlflow_server}/#/experiments/{result.experiment_id}/runs/{run_id}*", timeout=30_000)
            page.get_by_text(individual).first.wait_for(timeout=60_000)  # the MLflow UI shows the run's name
            # and inside MLflow's own UI, the run's description links its parent's run
            child = next(r for r in runs if r.data.tags["popplast.parent_ids"])
            parent = child.data.tags["popplast.parent_ids"].split(",")[0]
            parent_run = next(r.info.run_id for r in runs if r.data.tags["popplast.individual_id"] == parent)
            page.goto(f"{mlflow_server}/#/experiments/{result.experiment_id}/runs/{child.info.run_id}")
            anchor = page.get_by_role("link", name=parent, exact=True).first
            with page.context.expect_page() as opened:  # MLflow opens description links in a new tab
                anchor.click(timeout=60_000)
            tab = opened.value
            tab.wait_for_url(f"{mlflow_server}/#/experiments/{result.experiment_id}/runs/{parent_run}*", timeout=30_000)
            tab.get_by_text(parent).first.wait_for(timeout=60_000)
        finally:
            browser.close()


def test_tag_text_reaches_the_page_escaped():
    """Ids and operators come from run tags, which anyone who can write to the tracking server can set."""
    from popplast.reports.lineage import Lineage, Node, render_html

    evil = '"><script>alert(1)</script>'
    nodes = {
        evil: Node(evil, "r1" + evil, 0, [], "init", 0.5, {"lr": "<b>0.1</b>"}),
        "g001-i000": Node("g001-i000", "r2", 1, [evil], "mutation", 0.7),
    }
    page = render_html(Lineage("s", "1", "<i>title</i>", nodes, "g001-i000"), "http://127.0.0.1:5000")
    assert "<script>alert" not in page and "<b>" not in page and "<i>" not in page
    assert "&lt;script&gt;" in page  # in attributes and text
    assert "\\u003cscript\\u003ealert" in page  # in the script's data, where `</script>` would end it
    assert page.count("<script") == 2  # the page's own data and script, no more


@pytest.fixture(scope="module")
def soup_search(tmp_path_factory):
    """One small Gen-Soup search, shared by the tests that only read it (and the replay, which adds a run)."""
    folder = tmp_path_factory.mktemp("soup")
    tracking_uri = f"sqlite:///{folder / 'mlflow.db'}"
    spec = write_spec(folder, TINY_SPEC, "tiny.yaml")
    return popplast.run(
        spec, executor="local", method="gensoup", tracking_uri=tracking_uri, progress=False
    ), tracking_uri


def test_every_individuals_run_description_links_its_parents_and_children(soup_search, tmp_path):
    """The family tree walkable in the MLflow UI alone: run descriptions (mlflow.note.content) link each
    parent's and child's run, and every link is a run of the search."""
    import re

    result, tracking_uri = soup_search
    client = MlflowClient(tracking_uri)
    rows = individuals(tracking_uri, result.search_run_id)
    run_of = {r["id"]: r["run_id"] for r in rows}
    children = {r["id"]: sorted(c["id"] for c in rows if r["id"] in c["parents"]) for r in rows}
    assert any(children.values()) and any(len(r["parents"]) > 1 for r in rows)  # fused children exist
    link = re.compile(r"\[([^\]]+)\]\(#/experiments/(\w+)/runs/(\w+)\)")
    for r in rows:
        note = client.get_run(r["run_id"]).data.tags["mlflow.note.content"]
        parents_part, _, children_part = note.partition("Children:")
        linked_parents = [(text, exp, run) for text, exp, run in link.findall(parents_part)]
        assert [(t, run) for t, _, run in linked_parents] == [(p, run_of[p]) for p in r["parents"]], note
        assert sorted((t, run) for t, _, run in link.findall(children_part)) == [
            (c, run_of[c]) for c in children[r["id"]]
        ]
        for _, experiment, run in link.findall(note):  # the links resolve: runs of this search's experiment
            assert experiment == result.experiment_id
            assert client.get_run(run).data.tags["mlflow.parentRunId"] == result.search_run_id
        assert r["operator"] in note
    # the best individual's pedigree is logged beside the lineage page: a line of descent through parents
    steps = json.loads(open(client.download_artifacts(result.search_run_id, "pedigree.json", tmp_path)).read())["steps"]
    assert steps[-1]["individual"] == result.best.id
    parents = {r["id"]: r["parents"] for r in rows}
    assert all(a["individual"] in parents[b["individual"]] for a, b in zip(steps, steps[1:]))
    assert not parents[steps[0]["individual"]]  # back to an individual of the first generation
    search_note = client.get_run(result.search_run_id).data.tags["mlflow.note.content"]
    assert f"[{result.best.id}](#/experiments/{result.experiment_id}/runs/{result.best_run_id})" in search_note


def test_the_pedigree_follows_the_heaviest_parent_and_says_what_changed():
    """By hand: g001-i000 fuses g000-i001 (0.3) and g000-i002 (0.7), so its line goes back to g000-i002;
    g002-i000 inherits g001-i000 and changes lr; a tie of weights takes the first parent."""
    from popplast.reports.lineage import Lineage, Node
    from popplast.reports.pedigree import pedigree

    def node(key, parents=(), op="init", fusion=(), lr="0.1", size="8"):
        params = {"lr": lr, "image_size": size, "gene.lr": "0.5"}
        return Node(key, f"run-{key}", int(key[1:4]), list(parents), op, 0.5, params, list(fusion))

    nodes = {
        "g000-i000": node("g000-i000"),
        "g000-i001": node("g000-i001", lr="0.2"),
        "g000-i002": node("g000-i002", lr="0.3"),
        "g001-i000": node("g001-i000", ("g000-i001", "g000-i002"), "fusion", (0.3, 0.7), lr="0.3"),
        "g001-i001": node("g001-i001", ("g000-i000", "g000-i001"), "fusion", (0.5, 0.5), lr="0.1"),
        "g002-i000": node("g002-i000", ("g001-i000",), "inherit", (1.0,), lr="0.35", size="16"),
    }
    steps = pedigree(Lineage("s", "1", "t", nodes, "g002-i000"))
    assert [s["individual"] for s in steps] == ["g000-i002", "g001-i000", "g002-i000"]
    assert [s["operator"] for s in steps] == ["init", "fusion", "inherit"]
    assert steps[1]["parents"] == [
        {"individual": "g000-i001", "fusion_weight": 0.3},
        {"individual": "g000-i002", "fusion_weight": 0.7},
    ]
    assert [s["changed"] for s in steps] == [{}, {}, {"image_size": ["8", "16"], "lr": ["0.3", "0.35"]}]
    assert "gene.lr" not in steps[0]["params"]
    tie = pedigree(Lineage("s", "1", "t", nodes, "g001-i001"))
    assert [s["individual"] for s in tie] == ["g000-i000", "g001-i001"]
    # a child whose parents both failed took no weights (0, 0): its schedule, and so the line, starts with it
    nodes["g002-i001"] = node("g002-i001", ("g001-i000", "g001-i001"), "mutation", (0.0, 0.0))
    nodes["g003-i000"] = node("g003-i000", ("g002-i001",), "inherit", (1.0,))
    fresh = pedigree(Lineage("s", "1", "t", nodes, "g003-i000"))
    assert [s["individual"] for s in fresh] == ["g002-i001", "g003-i000"]
    assert [p["fusion_weight"] for p in fresh[0]["parents"]] == [0.0, 0.0]  # where its genes came from, kept


@pytest.mark.cluster  # the slow tier: a search of 1,250 individuals first (about a minute)
def test_the_page_reads_at_the_theses_scale(tmp_path):
    """Population 50 × 25 generations: the page opens quickly with the best focused, a click focuses another
    node and shows its hyperparameters, the search box finds an id, and the link reaches a real server."""
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (make test installs it when run as root)")
    from playwright.sync_api import sync_playwright

    from tests.helpers import MlflowServer, write_user_objective

    spec = write_user_objective(tmp_path / "user")
    server = MlflowServer(tmp_path / "server")
    store = f"sqlite:///{server.folder / 'server.db'}"  # the search logs into the store the server then serves
    result = popplast.run(
        spec, executor="local", population=50, generations=25, tracking_uri=store, experiment="thesis", progress=False
    )
    html_path, _ = draw_lineage(store, result.search_run_id, str(tmp_path / "tree"), ui_url=server.url, log=False)
    page_text = open(html_path, encoding="utf-8").read()
    assert page_text.count('<a class="node"') == 1250
    url = server.start()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                start = time.perf_counter()
                page.goto(f"file://{html_path}")
                page.wait_for_selector("body[data-ready]", timeout=30_000)
                opened = time.perf_counter() - start
                print(f"lineage.html of 1,250 individuals ({len(page_text) / 1e6:.2f} MB) opened in {opened:.2f} s")
                assert opened < 3.0, f"the page took {opened:.1f} s to open"
                tree = page.locator("#tree")
                assert tree.get_attribute("data-focus") == result.best.id
                assert page.locator("a.node.on").count() > 1  # the best's ancestry is drawn with it
                other = page.locator('a.node[data-individual="g010-i007"]')
                other.locator("circle").click()
                assert tree.get_attribute("data-focus") == "g010-i007"
                details = page.locator("#details")
                assert "g010-i007" in details.inner_text() and "x" in details.inner_text()
                page.fill("#find", "g020-i033")
                page.press("#find", "Enter")
                assert tree.get_attribute("data-focus") == "g020-i033"
                run_id = page.locator('a.node[data-individual="g020-i033"]').get_attribute("data-run")
                page.locator("#run-link").click()
                page.wait_for_url(f"{url}/#/experiments/{result.experiment_id}/runs/{run_id}*", timeout=30_000)
                page.get_by_text("g020-i033").first.wait_for(timeout=60_000)
            finally:
                browser.close()
    finally:
        server.stop()


def test_replay_retrains_the_best_gensoup_schedule_and_logs_it_beside_the_search(soup_search, capsys, tmp_path):
    result, tracking_uri = soup_search
    client = MlflowClient(tracking_uri)
    before = len(individuals(tracking_uri, result.search_run_id))
    assert main(["replay", result.search_run_id, "--tracking-uri", tracking_uri, "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert f"Replayed the schedule of {result.best.id}" in printed
    replay_run = client.search_runs(
        [result.experiment_id],
        f"tags.`popplast.role` = 'replay' and tags.mlflow.parentRunId = '{result.search_run_id}'",
    )[0]
    assert replay_run.data.tags["popplast.replay_of"] == result.best.id and replay_run.info.status == "FINISHED"
    steps = sorted(
        client.search_runs([result.experiment_id], f"tags.mlflow.parentRunId = '{replay_run.info.run_id}'"),
        key=lambda r: int(r.data.tags["popplast.replay_step"]),
    )
    pedigree = client.download_artifacts(result.search_run_id, "pedigree.json", str(tmp_path))
    line = json.loads(open(pedigree).read())["steps"]
    assert [r.data.tags["popplast.replayed"] for r in steps] == [s["individual"] for s in line]
    for run, step in zip(steps, line):  # each step trained the configuration (and fidelity) the search gave it
        assert {k: v for k, v in run.data.params.items()} == {k: v for k, v in step["params"].items()}
        assert run.data.metrics["fitness"] == pytest.approx(run.data.metrics["val_mcc"])
    assert "original_fitness" in replay_run.data.metrics and "fitness" in replay_run.data.metrics
    assert len(individuals(tracking_uri, result.search_run_id)) == before  # lineage readers do not count it
    assert main(["replay", result.search_run_id, "--tracking-uri", tracking_uri, "--individual", "nobody"]) == 2


def test_replay_of_a_ga_individual_is_its_own_training_again_with_the_same_fitness(tiny_spec, tracking_uri):
    """Nothing flows along a GA's line: the replay trains the individual's configuration with its seed, which
    gives the fitness the search measured."""
    result = popplast.run(tiny_spec, executor="local", tracking_uri=tracking_uri, progress=False)
    again = popplast.replay(result.search_run_id, tracking_uri=tracking_uri, progress=False)
    assert again.steps == [result.best.id]
    assert again.fitness == pytest.approx(result.best_fitness, abs=1e-12)
