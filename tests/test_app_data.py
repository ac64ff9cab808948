"""The Data page: every data set, the user's own photos (camera and uploads), the tutorial's files."""
from __future__ import annotations

import shutil
from dataclasses import replace

from PIL import Image
from streamlit.testing.v1 import AppTest

from core.data import load_dataset
from tests.apptest import assert_clean, button, disabled, errors, hand_photo, state, table
from tests.bad_input_corpus import H5Case, encode, hdf5_cases
from tests.conftest import stub_video

PAGE = "pages/data.py"


def _captures(at: AppTest):
    return at.session_state["d_captures"]


def test_the_page_opens_on_record_and_asks_for_no_camera_until_told(env, apps):
    # The snapshot camera asks the browser for the webcam as soon as it is drawn: the page opens on
    # Record, whose video starts when the user presses its start button.
    at = apps(PAGE)
    assert_clean(at)
    assert at.session_state["d_input"] == "Record"
    assert not at.camera_input
    assert any("Start the camera, then record a burst" in i.value for i in at.info)


def _snap(at: AppTest, data: bytes) -> None:
    """One camera snapshot, as the browser sends it (the camera widget's key changes after each one)."""
    if at.session_state["d_input"] != "Camera":  # Record is the tab open first
        at.session_state["d_input"] = "Camera"
        at.run()
    camera = at.camera_input[0]
    camera.set_value(("snapshot.jpg", data, "image/jpeg"))
    at.run()
    assert_clean(at)


def _target(at: AppTest, class_name: str) -> None:
    at.radio(key="d_target").set_value(class_name)
    at.run()


def _upload_photos(at: AppTest, files: list[tuple[str, bytes]]) -> None:
    uploader = next(u for u in at.get("file_uploader") if u.proto.id and "Photos of class" in u.proto.label)
    uploader.set_value([(n, d, "image/png" if n.endswith(".png") else "image/jpeg") for n, d in files])
    at.run()
    assert_clean(at)
    button(at, f"Add {len(files)} photo{'s' * (len(files) != 1)} to class {at.radio(key='d_target').value}").click()
    at.run()
    assert_clean(at)


def _fill(at: AppTest, per_class: int) -> None:
    """``per_class`` camera photos in every class (different images, so the set is learnable)."""
    for c in list(_captures(at).classes):
        _target(at, c)
        for i in range(per_class):
            _snap(at, hand_photo(size=128, index=int(c) * 10 + i if c.isdigit() else i))


def test_the_page_lists_every_data_set(env, apps):
    at = apps(PAGE)
    assert at.title[0].value == "Data"
    rows = table(at, "data set")
    assert list(rows["kind"]) == ["synthetic (generated)"]
    # The default classes are finger counts, so a SIGNS net keeps its head; each shows its photo count.
    assert at.radio(key="d_target").options == ["0", "1", "2", "3", "4", "5"]


def test_each_camera_snapshot_adds_one_photo_to_the_chosen_class(env, apps):
    at = apps(PAGE)
    _target(at, "2")
    _snap(at, hand_photo(size=300))
    assert _captures(at).counts()["2"] == 1
    assert any("Added 1 photo to class 2" in s.value for s in at.success)
    # The camera comes back live (a new widget) and the next snapshot adds another.
    _snap(at, hand_photo(size=300, index=1))
    assert _captures(at).counts() == {"0": 0, "1": 0, "2": 2, "3": 0, "4": 0, "5": 0}
    assert at.radio(key="d_target").value == "2"
    assert any(e.label.startswith("Class 2 — 2 photos") for e in at.expander)


def test_uploading_many_files_adds_the_images_and_names_the_bad_ones(env, apps):
    at = apps(PAGE)
    _target(at, "4")
    _upload_photos(at, [("a.jpg", hand_photo(200)), ("b.png", hand_photo(200, fmt="PNG", index=3)),
                        ("notes.jpg", b"this is not an image"), ("tiny.png", encode(Image.new("RGB", (16, 16)), "PNG"))])
    assert _captures(at).counts()["4"] == 2
    shown = errors(at)
    assert len(shown) == 2, shown
    assert any('"notes.jpg"' in m for m in shown)  # each file named the same way, each message a sentence
    assert 'Not added: "tiny.png" is only 16×16 pixels; photos must be at least 32×32.' in shown, shown
    assert any("Added 2 photos to class 4" in s.value for s in at.success)


def test_delete_removes_that_photo(env, apps):
    at = apps(PAGE)
    _target(at, "1")
    _snap(at, hand_photo(200, index=0))
    _snap(at, hand_photo(200, index=1))
    first, second = _captures(at).images["1"]
    deletes = [b for b in at.button if b.key == f"d_del_{first.id}"]
    assert deletes
    deletes[0].click()
    at.run()
    assert_clean(at)
    assert [i.id for i in _captures(at).images["1"]] == [second.id]


def test_own_class_names_and_dropping_a_class_with_photos_is_refused(env, apps):
    at = apps(PAGE)
    at.text_input(key="d_classes_text").set_value("rock, rock")
    at.run()
    assert any("twice" in m for m in errors(at))
    assert _captures(at).classes == list("012345")
    at.text_input(key="d_classes_text").set_value("rock, paper, scissors")
    at.run()
    assert at.radio(key="d_target").options == ["rock", "paper", "scissors"]
    _target(at, "paper")
    _snap(at, hand_photo(200))
    at.text_input(key="d_classes_text").set_value("rock, scissors")
    at.run()
    assert_clean(at)
    assert any("paper" in m and "delete them first" in m for m in errors(at))
    assert _captures(at).classes == ["rock", "paper", "scissors"]


def test_limits_are_stated_and_enforced(env, apps):
    env.monkeypatch.setattr("core.capture.MAX_PER_CLASS", 2)
    at = apps(PAGE)
    assert any("photos per class" in c.value for c in at.caption)
    for i in range(3):
        _snap(at, hand_photo(200, index=i))
    assert _captures(at).counts()["0"] == 2
    assert any("already has 2 photos" in m for m in errors(at))


def test_save_writes_an_image_folder_that_trains_like_any_set(env, apps):
    at = apps(PAGE)
    save = button(at, "Save data set")
    assert save.proto.disabled  # nothing captured yet
    _fill(at, per_class=3)
    # Photos enough, but no name yet: the button says why it waits (the grey "my-hand" is only an example).
    assert button(at, "Save data set").proto.disabled
    assert any(c.value == "To save: name the set." for c in at.caption)
    at.text_input(key="d_name").set_value("my hand")
    at.run()
    assert not any(c.value.startswith("To save:") for c in at.caption)
    button(at, "Save data set").click()
    at.run()
    assert_clean(at)
    assert not errors(at)
    folder = env.data / "my-hand"
    assert sorted(p.name for p in folder.iterdir()) == ["0", "1", "2", "3", "4", "5"]
    assert all(len(list((folder / c).glob("*.jpg"))) == 3 for c in "012345")
    assert any("Saved **my-hand**" in s.value for s in at.success)
    rows = table(at, "data set")
    mine = rows[rows["data set"] == "my-hand"].iloc[0]
    assert mine["kind"] == "real photos (image folder)" and mine["train"] + mine["test"] == 18
    ds = load_dataset(str(folder))
    assert ds.classes == tuple("012345") and len(ds.x_train) + len(ds.x_test) == 18
    # Saving again under that name needs the replace box, which says what it deletes; until it is
    # ticked the saved set stays as it was.
    assert any("called **my-hand** exists already (18 photos)" in w.value for w in at.warning)
    assert button(at, "Save data set").proto.disabled
    assert at.checkbox(key="d_replace").label == "Replace it (18 photos, deleted)"
    assert sum(1 for _ in folder.rglob("*.jpg")) == 18
    _captures(at).remove("5", _captures(at).images["5"][0].id)  # one photo fewer this time
    at.checkbox(key="d_replace").check()
    at.run()
    assert not at.warning and not button(at, "Save data set").proto.disabled
    button(at, "Save data set").click()
    at.run()
    assert_clean(at)
    assert sum(1 for _ in folder.rglob("*.jpg")) == 17
    assert not at.checkbox(key="d_replace").value  # a replace is never left armed for the next save
    # Downloads: the folder as a zip and the tutorial's HDF5 pair.
    labels = [b.label for b in at.get("download_button")]
    assert {"Image folder (.zip)", "train_my-hand.h5", "test_my-hand.h5"} <= set(labels)


def test_captures_belong_to_their_session(env, apps):
    one, two = apps(PAGE), apps(PAGE)
    _snap(one, hand_photo(200))
    two.run()
    assert _captures(one).total == 1
    assert _captures(two).total == 0
    assert state(two, "d_captures") is not _captures(one)


def _upload_h5(at: AppTest, files: list[tuple[str, bytes]]) -> None:
    at.file_uploader(key="h_data_upload").set_value([(n, d, "application/x-hdf5") for n, d in files])
    at.run()
    assert_clean(at)
    button(at, "Check and add").click()
    at.run()
    assert_clean(at)


def test_upload_adds_the_tutorials_files(env, apps, data_dir):
    at = apps(PAGE)
    real = {n: (data_dir / "signs" / n).read_bytes() for n in ("train_signs.h5", "test_signs.h5")}
    _upload_h5(at, [("train_signs.h5", real["train_signs.h5"])])
    assert not errors(at)
    assert any("Added train_signs.h5" in s.value for s in at.success)
    assert (env.data / "signs" / "train_signs.h5").read_bytes() == real["train_signs.h5"]
    # With its test file too, SIGNS appears in the table.
    _upload_h5(at, [("test_signs.h5", real["test_signs.h5"])])
    at.run()
    assert "SIGNS hand signs (0–5)" in list(table(at, "data set")["data set"])
    assert_clean(at)


def test_upload_refuses_bad_h5_files_and_keeps_a_good_one(env, apps, data_dir):
    good = (data_dir / "signs" / "train_signs.h5").read_bytes()
    target = env.data / "signs" / "train_signs.h5"
    target.parent.mkdir()
    shutil.copyfile(data_dir / "signs" / "train_signs.h5", target)
    cases: list[H5Case] = [c for c in hdf5_cases(env.tmp) if not c.ok]
    big = next(c for c in cases if c.upload_limit)
    env.monkeypatch.setattr("core.data.MAX_UPLOAD_BYTES", big.upload_limit)
    at = apps(PAGE)
    _upload_h5(at, [(c.filename, c.data) for c in cases])
    shown = errors(at)
    assert len(shown) == len(cases), shown
    for message in shown:
        assert message.startswith("Not added: train_signs.h5: "), message
    assert any("larger than the 1 MB limit" in m for m in shown)
    assert not at.success
    assert target.read_bytes() == good
    assert sorted(p.name for p in target.parent.iterdir()) == ["train_signs.h5"]




def test_frames_recorded_before_the_video_stopped_join_their_class(env, apps):
    import numpy as np

    from core.capture import FrameRecorder

    at = apps(PAGE)
    rec = FrameRecorder(interval_s=0.1, delay_s=0.0)
    rec.start("3", 5, now=0.0)
    for i, t in enumerate((0.0, 0.1, 0.2)):  # three of five, then the video stopped
        assert rec.offer(np.full((480, 640, 3), 60 + 40 * i, np.uint8), now=t)
    at.session_state["d_recorder"] = rec
    at.session_state["d_input"] = "Upload"  # the user left the Record tab: its video stopped
    at.run()
    assert_clean(at)
    assert _captures(at).counts()["3"] == 3 and _captures(at).total == 3
    assert [s.value for s in at.success] == ["Added 3 photos to class 3 (the recording stopped after 3 of 5)."]
    assert not rec.status().running  # the stopped video ended the recording
    at.run()
    assert not any("Added" in s.value for s in at.success)  # said once


def test_the_record_tab_refuses_a_malformed_ice_setting_with_a_message(env, apps):
    # The Record tab's live video needs a browser (WebRTC): tests/e2e/test_teach.py records through it.
    env.monkeypatch.setenv("TORCHLAB_ICE_SERVERS", "[1]")
    at = apps(PAGE)
    at.session_state["d_input"] = "Record"
    at.run()
    assert not at.camera_input  # one camera at a time: the snapshot camera is off while Record is open
    assert errors(at) == ["Live video can't start: $TORCHLAB_ICE_SERVERS: entry 0 needs \"urls\": a stun:, stuns:, "
                          "turn: or turns: URL or a list of them"]


def _recording_page(env, apps, target: str):
    import numpy as np

    from core.capture import FrameRecorder

    stub_video(env.monkeypatch, playing=True)
    at = apps(PAGE)
    rec = FrameRecorder(interval_s=1e-6, delay_s=0.0)  # every frame offered is kept
    at.session_state["d_recorder"] = rec
    at.session_state["d_input"] = "Record"
    at.run()
    _target(at, target)

    def offer(n: int) -> None:
        for i in range(n):
            assert rec.offer(np.full((480, 640, 3), 50 + 20 * i, np.uint8))
    return at, rec, offer


def _progress(at: AppTest) -> list[str]:
    return [p.proto.text for p in at.get("progress")]


def test_a_recording_adds_its_frames_as_they_come_and_says_so_once_at_the_end(env, apps):
    at, rec, offer = _recording_page(env, apps, "4")
    assert at.number_input(key="d_rec_count").value == 30  # the default burst
    at.number_input(key="d_rec_count").set_value(3)
    at.run()
    button(at, "Record 3 photos of class 4").click()
    at.run()
    assert_clean(at)
    assert rec.status().running and rec.status().asked == 3
    assert disabled(button(at, "Record 3 photos of class 4"))  # no second recording on top of this one
    offer(2)
    at.run()
    assert _captures(at).counts()["4"] == 2  # collected while it records
    assert _progress(at) == ["Recording class 4: 2 of 3 — keep moving your hand"]
    assert not any("Added" in m.value for m in at.success)
    offer(1)
    at.run()
    assert_clean(at)
    assert _captures(at).counts()["4"] == 3 and not rec.status().running
    # On to the next class without a photo, ready to record it.
    assert [m.value for m in at.success] == ["Added 3 photos to class 4 (next: class 5)."]
    assert at.radio(key="d_target").value == "5"
    assert _progress(at) == [] and not disabled(button(at, "Record 3 photos of class 5"))
    at.run()
    assert not any("Added" in m.value for m in at.success)  # said once
    assert at.radio(key="d_target").value == "5"


def test_stop_recording_keeps_what_it_recorded_and_the_count_survives_the_video(env, apps):
    at, rec, offer = _recording_page(env, apps, "1")
    at.number_input(key="d_rec_count").set_value(5)
    at.run()
    button(at, "Record 5 photos of class 1").click()
    at.run()
    offer(2)
    at.run()
    button(at, "Stop recording").click()
    at.run()
    assert_clean(at)
    assert not rec.status().running and _captures(at).counts()["1"] == 2
    assert [m.value for m in at.success] == ["Added 2 photos to class 1 (the recording stopped after 2 of 5)."]
    # The camera stopped and started again: the count asked for is kept.
    stub_video(env.monkeypatch, playing=False)
    at.run()
    stub_video(env.monkeypatch, playing=True)
    at.run()
    assert at.number_input(key="d_rec_count").value == 5


def test_a_full_class_cannot_record_and_says_what_to_do(env, apps):
    import numpy as np

    from core.capture import MAX_PER_CLASS

    at, rec, offer = _recording_page(env, apps, "0")
    cs = _captures(at)
    item = cs.add_frame("0", np.full((64, 64, 3), 9, np.uint8))
    cs.images["0"] = [replace(item, id=f"{item.id}{i}") for i in range(MAX_PER_CLASS)]
    at.run()
    assert_clean(at)
    assert disabled(button(at, "Record photos of class 0"))
    assert any(c.value.startswith(f"Class 0 is full ({MAX_PER_CLASS} photos): delete some") for c in at.caption)
    assert [e.proto.expanded for e in at.expander if e.label.startswith("Class 0 — ")] == [True]  # the current one
    _target(at, "1")
    assert not disabled(button(at, "Record 30 photos of class 1"))
    # A long class folds away while another is being added to: the Save box stays within reach.
    (full,) = [e for e in at.expander if e.label.startswith("Class 0 — ")]
    assert not full.proto.expanded
