"""Detections container and JSON Lines file; the ``sppnet-evaldet`` CLI on tiny VOC and LabelImg datasets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sppnet_exp.detection.structures.detections import Detections, read_detections, write_detections
from sppnet_exp.evaldet import main as evaldet


def sample() -> Detections:
    return Detections.from_arrays(
        ["im1", "im1", "im2", "im1"],
        ["cat", "dog", "cat", "cat"],
        [0.1 + 0.2, -1.5e-17, 3.0, 0.1 + 0.2],
        [[1, 2, 30.25, 40], [5, 5, 9, 9], [1.0 / 3, 2, 3, 4], [7, 7, 8, 8]],
    )


def test_round_trip_is_exact(tmp_path: Path):
    d = sample()
    path = write_detections(tmp_path / "sub" / "dets.jsonl", d)
    lines = path.read_text().splitlines()
    assert len(lines) == 4
    assert json.loads(lines[0]) == {"image_id": "im1", "label": "cat", "score": 0.1 + 0.2, "box": [1, 2, 30.25, 40]}
    back = read_detections(path)
    assert back.image_ids.tolist() == d.image_ids.tolist() and back.labels.tolist() == d.labels.tolist()
    assert np.array_equal(back.scores, d.scores) and np.array_equal(back.boxes, d.boxes)  # bit-exact floats
    assert [p.name for p in path.parent.iterdir()] == ["dets.jsonl"]  # no temp file left behind
    write_detections(path, Detections.empty())  # overwrite
    assert path.read_text() == "" and len(read_detections(path)) == 0


def test_container_helpers():
    d = sample()
    assert d.classes == ["cat", "dog"]
    per = d.by_class()
    assert per["cat"].image_ids.tolist() == ["im1", "im2", "im1"]  # original order kept
    assert per["cat"].scores.tolist() == [0.1 + 0.2, 3.0, 0.1 + 0.2]
    assert per["dog"].boxes.tolist() == [[5, 5, 9, 9]]
    both = Detections.concat([d, d])
    assert len(both) == 8 and both.scores[4:].tolist() == d.scores.tolist()
    ints = Detections.from_arrays("im9", [1, 0], [1.0, 2.0], np.zeros((2, 4)), classes=["cat", "dog"])
    assert ints.labels.tolist() == ["dog", "cat"] and ints.image_ids.tolist() == ["im9", "im9"]
    with pytest.raises(ValueError, match="classes"):
        Detections.from_arrays("im9", [0], [1.0], np.zeros((1, 4)))
    with pytest.raises(ValueError, match="lengths"):
        Detections(np.array(["a"], object), np.array(["c", "c"], object), np.zeros(1), np.zeros((1, 4)))
    with pytest.raises(ValueError, match="non-finite"):
        Detections.from_arrays("a", "c", [float("nan")], np.zeros((1, 4)))


def test_check_against_lists_offenders():
    d = sample()
    d.check_against(["im1", "im2"], ["cat", "dog"])
    with pytest.raises(ValueError, match=r"1 image id\(s\).*'im2'") as e:
        d.check_against(["im1"], ["cat", "dog"])
    assert "dog" not in str(e.value)
    with pytest.raises(ValueError, match=r"label\(s\).*'dog'"):
        d.check_against(["im1", "im2"], ["cat"])


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"image_id": "a", "label": "c", "score": 1.0, "box": [1, 2, 3, 4]', "invalid JSON"),
        ('{"image_id": "a", "label": "c", "box": [1, 2, 3, 4]}', "missing key.*score"),
        ('{"image_id": "a", "label": "c", "score": 1.0, "box": [1, 2, 3]}', "box must be 4"),
        ('{"image_id": "a", "label": "c", "score": 1.0, "box": [1, 2, "3", 4]}', "box must be 4"),
        ('{"image_id": "a", "label": "c", "score": NaN, "box": [1, 2, 3, 4]}', "finite"),
        ('{"image_id": "a", "label": "c", "score": true, "box": [1, 2, 3, 4]}', "finite"),
        ('{"image_id": 7, "label": "c", "score": 1.0, "box": [1, 2, 3, 4]}', "image_id"),
        ('{"image_id": "a", "label": 2, "score": 1.0, "box": [1, 2, 3, 4]}', "label"),
        ("[1, 2, 3]", "JSON object"),
        ('{"image_id": "a", "label": "c", "score": 1.0, "box": [5, 2, 3, 4]}', r"box \[5, 2, 3, 4\] has x2 < x1 \("),
        ('{"image_id": "a", "label": "c", "score": 1.0, "box": [1, 9, 3, 4]}', r"has y2 < y1 \("),
        ('{"image_id": "a", "label": "c", "score": 1.0, "box": [5, 9, 3, 4]}', "x2 < x1 and y2 < y1"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path: Path, line: str, message: str):
    good = '{"image_id": "a", "label": "c", "score": 1.0, "box": [1, 2, 3, 4]}'
    path = tmp_path / "d.jsonl"
    path.write_text(f"{good}\n\n{line}\n{good}\n")  # the blank line 2 is skipped; the bad one is line 3
    with pytest.raises(ValueError, match=message) as e:
        read_detections(path)
    assert f"{path}:3:" in str(e.value)


def test_missing_file(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        read_detections(tmp_path / "nope.jsonl")


# --- CLI ----------------------------------------------------------------------------------------------------------

OBJECTS = {  # image id -> [(name, box, difficult)]
    "img_a": [("cat", (11, 11, 40, 40), False), ("dog", (50, 10, 70, 60), False)],
    "img_b": [("cat", (5, 5, 30, 30), False), ("cat", (60, 60, 79, 79), True)],
    "img_c": [("dog", (20, 20, 60, 60), False)],
}


def _xml(image_id: str, objects, ext: str = ".jpg") -> str:
    objs = "".join(
        f"<object><name>{n}</name><difficult>{int(d)}</difficult><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
        f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for n, b, d in objects
    )
    return (
        f"<annotation><filename>{image_id}{ext}</filename><size><width>80</width><height>80</height>"
        f"<depth>3</depth></size>{objs}</annotation>"
    )


def _voc(root: Path) -> Path:
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True)
    for image_id, objects in OBJECTS.items():
        (root / "Annotations" / f"{image_id}.xml").write_text(_xml(image_id, objects))
        Image.new("RGB", (80, 80), (120, 30, 200)).save(root / "JPEGImages" / f"{image_id}.jpg")
    (root / "ImageSets/Main/test.txt").write_text("\n".join(OBJECTS) + "\n")
    (root / "ImageSets/Main/trainval.txt").write_text("img_a\n")
    return root


def _labelimg(root: Path) -> Path:
    folder = root / "images" / "test"
    folder.mkdir(parents=True)
    for image_id, objects in OBJECTS.items():
        (folder / f"{image_id}.xml").write_text(_xml(image_id, objects, ".JPG"))
        Image.new("RGB", (80, 80), (10, 200, 30)).save(folder / f"{image_id}.JPG", format="JPEG")
    return root


def _dets(tmp_path: Path) -> Path:
    # cat (npos 2; img_b's second cat is difficult):
    #   0.9 img_b difficult cat (ignored), 0.8 img_a cat (TP), 0.7 img_c FP, 0.6 img_b cat (TP)
    #   tp = [0,1,1,2], fp = [0,0,1,1], rec = [0,.5,.5,1], prec = [NaN,1,.5,2/3]
    #   11-pt: t = 0..0.5 -> 1 (6 points), t = .6..1 -> 2/3 (5 points): 28/33 = 0.84848...
    # dog (npos 2): 0.5 img_c dog (TP), only one -> rec [.5], prec [1] -> 6/11 = 0.54545...
    # mAP = (28/33 + 6/11) / 2 = 46/66 = 0.69697
    rows = [
        ("img_b", "cat", 0.9, [60, 60, 79, 79]),
        ("img_a", "cat", 0.8, [11, 11, 40, 41]),
        ("img_c", "cat", 0.7, [1, 1, 10, 10]),
        ("img_b", "cat", 0.6, [5, 5, 30, 30]),
        ("img_c", "dog", 0.5, [20, 20, 60, 60]),
    ]
    ids, labels, scores, boxes = zip(*rows)
    return write_detections(tmp_path / "dets.jsonl", Detections.from_arrays(list(ids), list(labels), scores, boxes))


@pytest.fixture
def loader():
    """The CLI reads datasets with ``sppnet_exp.data.detection``."""
    return pytest.importorskip("sppnet_exp.data.detection")


@pytest.mark.parametrize("make", [_voc, _labelimg], ids=["voc", "labelimg"])
def test_cli_end_to_end(tmp_path: Path, make, capsys, loader):
    root = make(tmp_path / "data")
    dets = _dets(tmp_path)
    out = tmp_path / "res" / "ap.json"
    assert evaldet([str(root), str(dets), "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["AP"] == {"cat": pytest.approx(28 / 33), "dog": pytest.approx(6 / 11)}
    assert res["mAP"] == pytest.approx(46 / 66)
    text = capsys.readouterr().out
    assert "84.85" in text and "54.55" in text and "69.70" in text
    assert evaldet([str(root), str(dets), "--json", str(out), "--all-point"]) == 0
    # all-point: cat envelope 1 over recall 0..0.5, 2/3 over 0.5..1 -> 5/6; dog 0.5.
    assert json.loads(out.read_text())["AP"] == {"cat": pytest.approx(5 / 6), "dog": pytest.approx(0.5)}
    # Only dogs: the cat detections are ignored.
    assert evaldet([str(root), str(dets), "--json", str(out), "--classes", "dog"]) == 0
    assert json.loads(out.read_text()) == {"mAP": pytest.approx(6 / 11), "AP": {"dog": pytest.approx(6 / 11)}}


def test_cli_user_errors_exit_2(tmp_path: Path, capsys, loader):
    root = _voc(tmp_path / "data")
    dets = _dets(tmp_path)
    assert evaldet([str(root), str(tmp_path / "missing.jsonl")]) == 2
    assert "missing.jsonl" in capsys.readouterr().err
    assert evaldet([str(tmp_path / "nodata"), str(dets)]) == 2
    assert "nodata" in capsys.readouterr().err
    # img_c is not in trainval: unknown image ids.
    assert evaldet([str(root), str(dets), "--split", "trainval"]) == 2
    err = capsys.readouterr().err
    assert "'img_b'" in err and "'img_c'" in err and len(err.strip().splitlines()) == 1
    bad = write_detections(tmp_path / "bad.jsonl", Detections.from_arrays("img_a", "zebra", [1.0], [[1, 1, 5, 5]]))
    assert evaldet([str(root), str(bad)]) == 2
    assert "'zebra'" in capsys.readouterr().err


def test_one_pixel_box_is_valid(tmp_path: Path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"image_id": "a", "label": "c", "score": 1.0, "box": [3, 4, 3, 4]}\n')
    assert read_detections(path).boxes.tolist() == [[3.0, 4.0, 3.0, 4.0]]


def test_cli_inverted_box_exit_2_naming_the_line(tmp_path: Path, capsys, loader):
    root = _voc(tmp_path / "data")
    dets = _dets(tmp_path)
    lines = dets.read_text().splitlines()
    lines.insert(2, json.dumps({"image_id": "img_a", "label": "cat", "score": 0.5, "box": [40, 11, 11, 40]}))
    bad = tmp_path / "inverted.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    assert evaldet([str(root), str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:3:" in err and "x2 < x1" in err and "1-based" in err
    assert len(err.strip().splitlines()) == 1


def test_cli_empty_file_warns_and_strict_fails(tmp_path: Path, capsys, loader):
    root = _voc(tmp_path / "data")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")  # blank lines only: no detections
    out = tmp_path / "ap.json"
    assert evaldet([str(root), str(empty), "--json", str(out)]) == 0
    cap = capsys.readouterr()
    assert "warning" in cap.err and str(empty) in cap.err and "no detections" in cap.err
    assert json.loads(out.read_text()) == {"mAP": 0.0, "AP": {"cat": 0.0, "dog": 0.0}}
    assert evaldet([str(root), str(empty), "--strict"]) == 2
    err = capsys.readouterr().err
    assert "error" in err and str(empty) in err and "--strict" in err
    # Detections only of classes not evaluated: the same warning / error.
    cats = write_detections(tmp_path / "cats.jsonl", Detections.from_arrays("img_a", "cat", [1.0], [[11, 11, 40, 40]]))
    assert evaldet([str(root), str(cats), "--classes", "dog"]) == 0
    assert "none of its 1 detections" in capsys.readouterr().err
    assert evaldet([str(root), str(cats), "--classes", "dog", "--strict"]) == 2
    assert "none of its 1 detections" in capsys.readouterr().err


def test_cli_help_gives_the_box_and_image_id_conventions(capsys):
    with pytest.raises(SystemExit) as e:
        evaldet(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert "1-based" in text and "[x1, y1, x2, y2]" in text
    assert "image_id" in text and "ImageSets/Main" in text and "--strict" in text
