"Variant catalogues: spec validation with line numbers, rules, stable ids, eligibility, the pipeline."
import polars as pl
import pytest

from campaign_lab.lake import TABLES, read_table, write_table
from campaign_lab.execute import execute
from campaign_lab.variants import (SpecError, build_catalogue, diff_catalogues, eligible_arms, load_spec, offer_words,
                                   parse_spec)
from conftest import REPO

SPEC = (REPO / "campaigns" / "spring.yaml").read_text()


def line_of(text, needle):
    return next(i for i, l in enumerate(text.splitlines(), 1) if needle in l)


@pytest.mark.parametrize("change, field, words", [
    (("  cta: [order, menu]", "  cta: [order, menu]\n  colour: [red]"), "factors.colour", "unknown factor"),
    (("tonality: [friendly, urgent, playful, premium, informative]", "tonality: []"), "factors.tonality", "empty level list"),
    (("tonality: [friendly, urgent, playful, premium, informative]", "tonality: [friendly, urgent, friendly]"), "factors.tonality", "duplicate level(s) friendly"),
    (("tonality: [friendly, urgent,", "tonality: [angry, urgent,"), "factors.tonality.0", "unknown tonality 'angry'"),
    (("bogo: []", "bogo: [1]"), "factors.offer.bogo", "takes no value"),
    (("percent_off: [10, 15, 20, 25, 30]", "percent_off: [10, -5]"), "factors.offer.percent_off", "positive numbers"),
    (("plain: \"{opener} Spring", "plain: \"{opener} {dish} Spring"), "templates.subject.plain", "{dish}"),
    (("- {tonality: urgent, offer_type: loyalty_points}", "- {tonality: shouty, offer_type: loyalty_points}"), "rules.banned_pairs.0.tonality", "'shouty' is not a level"),
    (("subject_max_chars: 60", "subject_chars: 60"), "limits.subject_chars", "unknown limit"),
    (("campaign_id: spring_menu", "campaign_id: spring_menu\nlearn_from: spring menu"), "learn_from", "must be the id of an earlier contextual campaign"),
    (("campaign_id: spring_menu", "campaign_id: spring_menu\nlearn_from: spring_menu"), "learn_from", "cannot learn from itself"),
])
def test_spec_errors_name_line_and_field(change, field, words):
    text = SPEC.replace(*change)
    assert text != SPEC
    with pytest.raises(SpecError) as e: parse_spec(text, "spring.yaml")
    msg = str(e.value)
    assert f": {field}: " in msg and words in msg, msg
    line = int(msg.split(":")[1])
    assert line == line_of(text, change[1].split("\n")[-1].strip()[:12]), msg


def test_rule_removing_everything_and_coverage_gap():
    with pytest.raises(SpecError, match="removes every remaining variant"):
        build_catalogue(parse_spec(SPEC.replace("subject_max_chars: 60", "subject_max_chars: 5"), "s.yaml"))
    with pytest.raises(SpecError, match="require_coverage"):
        build_catalogue(parse_spec(SPEC.replace("percent_off: 25\n", "percent_off: 5\n"), "s.yaml"))


def test_demo_catalogue():
    cat = build_catalogue(load_spec(REPO / "campaigns" / "spring.yaml"))
    v = cat.variants
    assert v.height >= 200 and v.schema == TABLES["variants"].schema
    assert v["variant_id"].is_unique().all() and v["variant_id"].str.contains(r"^v[0-9a-f]{10}$").all()
    assert (v["subject"].str.len_chars() <= 60).all() and not v["subject"].str.contains(r"[{}]").any()
    assert v.filter(offer_type="percent_off")["offer_value"].max() <= 25
    assert v.filter((pl.col("tonality") == "urgent") & (pl.col("offer_type") == "loyalty_points")).is_empty()
    assert v.filter(offer_type="none")["offer_value"].to_list() == [0.0] * v.filter(offer_type="none").height
    # every tonality with every offer type that is not banned
    assert v.select("tonality", "offer_type").n_unique() == 5 * 6 - 2
    assert dict(cat.removed.iter_rows())["banned pair: tonality=urgent with offer_type=loyalty_points"] == 12


def test_ids_are_stable_and_survive_new_levels_and_reordering():
    a = build_catalogue(parse_spec(SPEC, "a.yaml")).variants
    reordered = SPEC.replace("[friendly, urgent, playful, premium, informative]", "[informative, premium, playful, urgent, friendly]")
    b = build_catalogue(parse_spec(reordered, "b.yaml")).variants
    assert sorted(a["variant_id"]) == sorted(b["variant_id"])
    more = SPEC.replace("loyalty_points: [100, 250]", "loyalty_points: [100, 250, 500]")
    c = build_catalogue(parse_spec(more, "c.yaml")).variants
    d = diff_catalogues(a, c)
    assert d.filter(status="removed").is_empty() and d.filter(status="unchanged").height == a.height
    assert (d.filter(status="added")["offer_value"] == 500).all()
    other = build_catalogue(parse_spec(SPEC.replace("campaign_id: spring_menu", "campaign_id: autumn"), "d.yaml")).variants
    assert not set(other["variant_id"]) & set(a["variant_id"])


def test_offer_words():
    assert [offer_words("amount_off", 2.5), offer_words("free_item", 3, "drink"), offer_words("loyalty_points", 1000)] == \
        ["$2.50 off", "3 free drinks", "1,000 bonus points"]


def test_eligibility():
    cat = build_catalogue(load_spec(REPO / "campaigns" / "spring.yaml"))
    prof = pl.DataFrame({"segment": [0, 1], "avg_ticket": [60.0, 10.0], "recency_days": [10, 300]})
    arms = eligible_arms(cat, prof).join(cat.variants, on="variant_id")
    big = arms.filter(segment=0)
    assert big.filter(offer_type="percent_off")["offer_value"].max() == 10 and big.filter(offer_type="amount_off")["offer_value"].max() == 3
    assert arms.filter(segment=1, offer_type="none").is_empty()
    with pytest.raises(SpecError, match="no column 'avg_ticket'"): eligible_arms(cat, prof.drop("avg_ticket"))


def test_variants_pipeline_keeps_other_campaigns_and_reruns_idempotently(project, tmp_path):
    other = tmp_path / "autumn.yaml"
    other.write_text(SPEC.replace("campaign_id: spring_menu", "campaign_id: autumn_menu"))
    r1 = execute("variants", root=project)
    r2 = execute("variants", {"spec": str(other)}, root=project)
    assert r1.ok and r2.ok, (r1.manifest["error"], r2.manifest["error"])
    v = read_table(project / "lake", "variants")
    assert set(v["campaign_id"]) == {"spring_menu", "autumn_menu"}
    arms = read_table(project / "lake", "arms")
    assert arms.group_by("campaign_id").len().sort("campaign_id")["len"].to_list() == [v.filter(campaign_id="autumn_menu").height * 8,
                                                                                       v.filter(campaign_id="spring_menu").height * 8]
    r3 = execute("variants", {"spec": str(other)}, root=project)
    assert all(o["reused"] for o in r3.manifest["outputs"])
    page = (r1.run_dir / "report.html").read_text()
    assert "Sample subject lines" in page and "what the rules removed" in page


def test_variants_pipeline_bad_spec_fails_cleanly(project, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(SPEC.replace("cta: [order, menu]", "cta: []"))
    r = execute("variants", {"spec": str(bad)}, root=project)
    assert r.status == "failed" and r.manifest["error"]["ename"] == "SpecError"
    assert "factors.cta: empty level list" in r.manifest["error"]["evalue"]
    assert r.manifest["outputs"] == []


def test_a_spec_names_the_campaign_it_learns_from():
    "learn_from in a spec goes to the campaign's row of the `campaigns` table, for its first contextual wave; absent, the row says none."
    from campaign_lab.variants import campaign_row, campaign_rules
    spec = parse_spec(SPEC.replace("campaign_id: spring_menu", "campaign_id: spring_menu\nlearn_from: spring_2025"), "spring.yaml")
    assert spec.learn_from == "spring_2025" and campaign_rules(campaign_row(spec), "spring_menu").learn_from == "spring_2025"
    plain = campaign_row(parse_spec(SPEC, "spring.yaml"))
    assert plain["learn_from"].to_list() == [None] and campaign_rules(plain, "spring_menu").learn_from == ""
    assert campaign_rules(plain.drop("learn_from"), "spring_menu").learn_from == ""   # a part written before the column
