"""Caption noun matching and caption files."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ovdet.pseudo.captions import group_coco_captions, read_caption_records
from ovdet.pseudo.vocabulary import NounVocabulary, normalize_text, plurals


@pytest.fixture()
def vocabulary():
    return NounVocabulary([
        {"id": 1, "name": "cat"},
        {"id": 3, "name": "dragon fruit", "synonyms": ["pitaya"]},
        {"id": 4, "name": "fruit"},
        {"id": 5, "name": "blueberry"},
        {"id": 7, "name": "tomato"},
        {"id": 9, "name": "bus"},
        {"id": 11, "name": "ice cube"},
    ])


@pytest.mark.parametrize("caption, expected", [
    ("A cat.", [1]),
    ("two cats and a CAT", [1]),                        # plural, case, once per caption
    ("a category of concatenated bobcats", []),         # never inside a longer word
    ("some blueberries, a bus and three buses", [5, 9]),
    ("tomatoes!", [7]),
    ("a dragon fruit next to a fruit", [3, 4]),         # the longest name wins at a position
    ("dragon fruits", [3]),
    ("a pitaya", [3]),                                  # synonym
    ("ice-cubes, on ice; a cube", [11]),                # punctuation separates words
    ("(cat)/[bus]", [1, 9]),
    ("Un café avec un CAT", [1]),                       # accents stripped
    ("", []),
])
def test_match(vocabulary, caption, expected):
    assert vocabulary.match(caption) == expected


def test_first_mention_order(vocabulary):
    assert vocabulary.match("a bus, a cat and another bus") == [9, 1]


def test_plural_and_normalize():
    assert [plurals(w) for w in ("cat", "bus", "box", "peach", "berry", "day", "ice cube")] == \
        [["cats"], ["buses"], ["boxes"], ["peaches"], ["berries"], ["days"], ["ice cubes"]]
    assert plurals("tomato") == ["tomatos", "tomatoes"] and plurals("video") == ["videos"]
    assert normalize_text("  Ice-Cube,\tcrème  ") == "ice cube creme"


def test_bad_vocabularies():
    with pytest.raises(ValueError, match="empty"):
        NounVocabulary([])
    with pytest.raises(ValueError, match="ids must be unique"):
        NounVocabulary([{"id": 1, "name": "cat"}, {"id": 1, "name": "dog"}])
    with pytest.raises(ValueError, match="no usable 'name'"):
        NounVocabulary([{"id": 1, "name": "!!"}])
    with pytest.raises(ValueError, match="integer 'id'"):
        NounVocabulary([{"id": None, "name": "cat"}])
    with pytest.raises(ValueError, match="list of strings"):
        NounVocabulary([{"id": 1, "name": "cat", "synonyms": "kitty"}])
    with pytest.raises(ValueError, match="list of strings"):
        NounVocabulary([{"id": 1, "name": "cat", "synonyms": [None]}])


def test_shared_names(caplog):
    # a name two categories give explicitly is ambiguous: not matched, with a warning
    vocabulary = NounVocabulary([{"id": 1, "name": "cat"},
                                 {"id": 2, "name": "kitty", "synonyms": ["cat"]}])
    assert vocabulary.match("a cat and a kitty") == [2]
    assert "not matched: cat, cats" in caplog.text
    # an explicit name beats another category's generated plural
    vocabulary = NounVocabulary.from_names(["glass", "glasses"])
    assert vocabulary.match("a glass") == [1] and vocabulary.match("my glasses") == [2]
    assert vocabulary.categories[0].phrases == ("glass",)


def test_lvis_names():
    vocabulary = NounVocabulary([{"id": 12, "name": "bat_(animal)", "synonyms": ["bat_(animal)"]},
                                 {"id": 13, "name": "baseball_bat", "synonyms": ["baseball_bat"]}])
    assert vocabulary.match("a bat flies over a baseball bat") == [12, 13]
    assert vocabulary.match("two bats") == [12]


def test_vocabulary_files(tmp_path):
    text = tmp_path / "vocabulary.txt"
    text.write_text("tomato, tomatoes\n\nice cube\n")
    vocabulary = NounVocabulary.from_file(text)
    assert [c.id for c in vocabulary.categories] == [1, 2]
    assert vocabulary.names == ["tomato", "ice cube"]
    assert vocabulary.match("three tomatoes and an ice cube") == [1, 2]
    coco = tmp_path / "instances.json"
    coco.write_text(json.dumps({"categories": [{"id": 18, "name": "dog", "synonyms": ["puppy"]}],
                                "images": [], "annotations": []}))
    assert NounVocabulary.from_file(coco).match("puppies") == [18]
    coco.write_text(json.dumps({"categories": [{"id": 18, "name": "dog", "split": "novel",
                                                "image_count": 5, "synonyms": ["puppy"]}]}))
    assert NounVocabulary.from_file(coco).coco_categories() == [
        {"id": 18, "name": "dog", "split": "novel", "synonyms": ["puppy"]}]
    assert vocabulary.coco_categories() == [{"id": 1, "name": "tomato", "synonyms": ["tomatoes"]},
                                            {"id": 2, "name": "ice cube", "synonyms": []}]
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        NounVocabulary.from_file(tmp_path / "bad.json")
    with pytest.raises(FileNotFoundError):
        NounVocabulary.from_file(tmp_path / "missing.txt")


COCO_CAPTIONS = {
    "info": {}, "licenses": [],
    "images": [{"id": 9, "file_name": "000000000009.jpg", "height": 480, "width": 640,
                "license": 1, "coco_url": "", "date_captured": "", "flickr_url": ""},
               {"id": 25, "file_name": "000000000025.jpg", "height": 426, "width": 640},
               {"id": 30, "file_name": "000000000030.jpg", "height": 428, "width": 640}],
    "annotations": [{"image_id": 9, "id": 1, "caption": "A plate of food."},
                    {"image_id": 30, "id": 2, "caption": "A vase of flowers."},
                    {"image_id": 9, "id": 3, "caption": "Broccoli and oranges."}],
}


def test_group_coco_captions():
    records, without = group_coco_captions(COCO_CAPTIONS)
    assert without == [25]
    assert records == [
        {"id": 9, "file_name": "000000000009.jpg", "height": 480, "width": 640,
         "captions": ["A plate of food.", "Broccoli and oranges."]},
        {"id": 30, "file_name": "000000000030.jpg", "height": 428, "width": 640,
         "captions": ["A vase of flowers."]}]
    with pytest.raises(ValueError, match="string 'caption'"):
        group_coco_captions({"images": [], "annotations": [{"image_id": 1, "caption": 3}]})


def test_read_caption_records(tmp_path):
    path = tmp_path / "captions.json"
    records, _ = group_coco_captions(COCO_CAPTIONS)
    path.write_text(json.dumps(COCO_CAPTIONS))
    assert read_caption_records(path) == records  # COCO's own form is read directly
    path.write_text(json.dumps({"images": records + records[:1]}))
    with pytest.raises(ValueError, match="appears twice"):
        read_caption_records(path)
    for bad, message in (({"id": "9", "file_name": "a.jpg", "captions": []}, "integer 'id'"),
                         ({"id": 9, "file_name": 3, "captions": []}, "path string"),
                         ({"id": 9, "file_name": "a.jpg", "captions": "a cat"}, "must be a list"),
                         (["a cat"], "not an object")):
        path.write_text(json.dumps({"images": [bad]}))
        with pytest.raises(ValueError, match=message):
            read_caption_records(path)
    path.write_text(json.dumps({"images": records}))
    assert read_caption_records(path) == records
    minimal = [{"id": 1, "file_name": "a.jpg", "captions": ["a cat"]}]  # no height and width
    path.write_text(json.dumps({"images": minimal}))
    assert read_caption_records(path) == minimal
    with pytest.raises(FileNotFoundError):
        read_caption_records(tmp_path / "missing.json")


def test_prepare_coco_captions_script(tmp_path):
    script = Path(__file__).resolve().parents[1] / "datasets/prepare_coco_captions.py"
    source = tmp_path / "captions_train2017.json"
    source.write_text(json.dumps(COCO_CAPTIONS))
    done = subprocess.run([sys.executable, str(script), "--input", str(source)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "2 images, 3 captions; 1 images without a caption" in done.stdout
    written = read_caption_records(tmp_path / "captions_train2017_ovdet.json")
    assert written == group_coco_captions(COCO_CAPTIONS)[0]
    missing = subprocess.run([sys.executable, str(script), "--input", str(tmp_path / "no.json")],
                             capture_output=True, text=True)
    assert missing.returncode == 2 and "cocodataset.org" in missing.stderr
    source.write_text(json.dumps({"images": [], "annotations": [{"image_id": 1}]}))
    bad = subprocess.run([sys.executable, str(script), "--input", str(source)],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "string 'caption'" in bad.stderr
