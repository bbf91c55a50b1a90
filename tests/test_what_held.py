"What a hostile test found already safe, kept so: parameter values never run as code, markup never makes a campaign id."
from __future__ import annotations

import pytest

from campaign_lab.execute import execute
from campaign_lab.variants import SpecError, parse_spec
from conftest import REPO


@pytest.mark.parametrize("value", ['x"); open("PWNED", "w").write("1"); ("', "x\nopen('PWNED', 'w').write('1')\n#",
                                   "x'''; open('PWNED', 'w').write('1'); '''", '"""); open("PWNED", "w").write("1"); ("""'])
def test_parameter_values_are_data_never_code(project, value):
    r = execute("validate", {"tables": value}, root=project)
    assert r.status == "failed" and r.manifest["error"]["ename"] == "ValueError"   # the value arrived as a table name ...
    assert "unknown table(s)" in r.manifest["error"]["evalue"]
    assert not list(project.rglob("PWNED"))                                       # ... and nothing ran


def test_markup_in_a_campaign_id_is_refused():
    spec = (REPO / "campaigns" / "spring.yaml").read_text()
    for cid in ("'<img src=x onerror=alert(1)>'", "'spring menu'", "'../x'"):
        with pytest.raises(SpecError, match="campaign_id: must be letters, digits and underscores"):
            parse_spec(spec.replace("campaign_id: spring_menu", f"campaign_id: {cid}"), "spring.yaml")
