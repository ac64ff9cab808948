"""The Overview page."""
from __future__ import annotations

from tests.apptest import assert_clean, table


# --- Overview -------------------------------------------------------------------------------------


def test_overview_with_no_data_files_says_synthetic(env, apps):
    at = apps()
    assert at.title[0].value == "🔥 TorchLab"
    rows = table(at, "data set")
    assert len(rows) == 1
    assert rows.iloc[0]["kind"] == "synthetic (generated)"
    assert "synthetic" in rows.iloc[0]["data set"]
    assert any("synthetic" in i.value for i in at.info)
    assert any("built-in synthetic" in w.value for w in at.sidebar.warning)
    assert any(link.label.startswith("Add the tutorial's files") for link in at.get("page_link"))
    assert_clean(at)


def test_overview_lists_signs_when_the_real_files_are_there(env, apps, data_dir):
    env.monkeypatch.setenv("TORCHLAB_DATA_DIR", str(data_dir))
    at = apps()
    rows = table(at, "data set")
    assert "SIGNS hand signs (0–5)" in list(rows["data set"])
    signs = rows[rows["data set"] == "SIGNS hand signs (0–5)"].iloc[0]
    assert signs["kind"] == "real photos (tutorial HDF5)" and signs["train"] == 1080 and signs["classes"] == "0, 1, 2, 3, 4, 5"
    assert not any("Only the built-in" in i.value for i in at.info)
    assert any("SIGNS" in s.value for s in at.sidebar.success)
    # The tutorial's files are here: the link to the Data page no longer asks for them.
    links = [link.label for link in at.get("page_link") if "Data page" in link.label]
    assert links == ["Teach it your own hand, or add more data, on the Data page"], links
    assert_clean(at)


