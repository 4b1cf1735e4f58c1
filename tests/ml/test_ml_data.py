"""Readers for GermEval 2018 TSV, GermEval 2021 CSV, generic CSV and JSON lines."""

from __future__ import annotations

import pytest

from moderation.ml.data import DataError, detect_format, read_dataset, read_datasets


def _write(path, text: str, newline: str = "\n"):
    path.write_bytes(text.replace("\n", newline).encode("utf-8"))
    return path


def test_germeval2018_tsv(tmp_path):
    path = _write(tmp_path / "ge18.txt", (
        "@Anna_B Du bist so ein Depp|LBR|echt jetzt\tOFFENSE\tINSULT\n"
        "@anna_b Schönen Tag noch\tOTHER\tOTHER\n"
        "Kein Erwähnter hier, nur Mist\tOFFENSE\tPROFANITY\n"
        "\n"
        "@medienhaus @Anna_B Die sind alle Pack\tOFFENSE\tABUSE\n"
    ))
    data = read_dataset(path)
    assert data.texts[0] == "@Anna_B Du bist so ein Depp|LBR|echt jetzt"
    assert data.labels == [1, 0, 1, 1]
    assert data.categories == ["insult", None, "profanity", "abuse"]
    assert data.groups[0] == data.groups[1] == "ge18.txt:@anna_b"
    assert data.groups[2] == "ge18.txt:row3"
    assert data.groups[3] == "ge18.txt:@medienhaus"
    assert data.sources[0]["rows"] == 4 and data.sources[0]["format"] == "germeval2018"
    assert len(data.sources[0]["sha256"]) == 64
    assert data.domains == ["tweet"] * 4


def test_germeval2021_csv_with_crlf_and_quoted_newlines(tmp_path):
    path = _write(tmp_path / "ge21.csv", (
        "comment_id,comment_text,Sub1_Toxic,Sub2_Engaging,Sub3_FactClaiming\n"
        '1,"Erste Zeile\nzweite Zeile, mit Komma",0,1,0\n'
        '2,"@USER Du hast ""keine"" Ahnung",1,0,0\n'
        "75,Ganz normal,0,0,1\n"
    ), newline="\r\n")
    data = read_dataset(path)
    assert data.texts[0] == "Erste Zeile\r\nzweite Zeile, mit Komma"
    assert data.texts[1] == '@USER Du hast "keine" Ahnung'
    assert data.labels == [0, 1, 0]
    assert data.categories == [None, None, None]
    assert data.groups == ["ge21.csv:block0", "ge21.csv:block0", "ge21.csv:block1"]
    assert data.sources[0]["format"] == "germeval2021"
    assert data.domains == ["comment"] * 3  # the genre the service scores


@pytest.mark.parametrize(("label", "expected"), [
    ("1", 1), ("0", 0), ("true", 1), ("False", 0), ("offensive", 1), ("OK", 0),
])
def test_generic_csv_labels(tmp_path, label, expected):
    path = _write(tmp_path / "mine.csv", f"text,label,category\nirgendein Text,{label},\n")
    data = read_dataset(path)
    assert data.labels == [expected]
    assert data.sources[0]["format"] == "csv"


def test_generic_csv_category_and_group(tmp_path):
    path = _write(tmp_path / "mine.csv",
                  "text,label,category,group\n\"Du Depp, echt\",1,Insult,t1\nNett,0,,t1\n")
    data = read_dataset(path)
    assert data.categories == ["insult", None]
    assert data.groups == ["mine.csv:t1", "mine.csv:t1"]
    assert data.domains == ["comment", "comment"]  # no domain column: the genre the service scores


def test_generic_rows_may_name_their_domain(tmp_path):
    path = _write(tmp_path / "mixed.jsonl", (
        '{"text": "Du Depp", "label": 1, "domain": "tweet"}\n'
        '{"text": "Danke!", "label": 0, "domain": "forum_post"}\n'
        '{"text": "Gut so", "label": 0, "domain": ""}\n'
    ))
    assert read_dataset(path).domains == ["tweet", "forum_post", "comment"]


def test_jsonl(tmp_path):
    path = _write(tmp_path / "rows.jsonl", (
        '{"text": "Du Knalltüte", "label": true, "category": "insult"}\n'
        "\n"
        '{"text": "Gute Besserung!", "label": 0}\n'
        '{"text": "Wir wissen, wo dein Büro ist", "label": 1, "category": "Threat"}\n'
    ))
    data = read_dataset(path)
    assert data.texts == ["Du Knalltüte", "Gute Besserung!", "Wir wissen, wo dein Büro ist"]
    assert data.labels == [1, 0, 1]
    assert data.categories == ["insult", None, "threat"]


@pytest.mark.parametrize(("name", "content", "where", "message"), [
    ("bad.txt", "gut\tOTHER\tOTHER\nkaputt ohne Tabs\n", "bad.txt:2", "fields"),
    ("bad.txt", "gut\tVIELLEICHT\tOTHER\n", "bad.txt:1", "coarse label"),
    ("bad.txt", "gut\tOFFENSE\tGEMEIN\n", "bad.txt:1", "category"),
    ("bad.jsonl", '{"text": "a", "label": 1}\n{"text": "b", "label": \n', "bad.jsonl:2",
     "invalid JSON"),
    ("bad.jsonl", '{"text": "a"}\n', "bad.jsonl:1", "needs 'text' and 'label'"),
    ("bad.jsonl", '{"text": "a", "label": "vielleicht"}\n', "bad.jsonl:1", "label"),
    ("bad.csv", "text,label\na,1\nb,1,zu viel\n", "bad.csv:3", "columns"),
    ("bad.csv", "text,note\na,1\n", "bad.csv:1", "header"),
    ("bad21.csv", "comment_id,comment_text,Sub1_Toxic\nx,Hallo,0\n", "bad21.csv:2",
     "comment_id"),
    ("bad21.csv", "comment_id,comment_text,Sub1_Toxic\n1,Hallo,2\n", "bad21.csv:2", "Sub1_Toxic"),
    ("empty.jsonl", "\n", "empty.jsonl", "no rows"),
    ("bad.jsonl", '{"text": "a", "label": 1, "domain": 7}\n', "bad.jsonl:1", "'domain'"),
    ("bad.csv", "text,label,domain\na,1,Twitter Posts\n", "bad.csv:2", "'domain'"),
])
def test_malformed_rows_name_file_and_line(tmp_path, name, content, where, message):
    path = _write(tmp_path / name, content)
    with pytest.raises(DataError) as info:
        read_dataset(path)
    assert where in str(info.value)
    assert message in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_dataset(tmp_path / "nope.txt")


@pytest.mark.parametrize(("name", "first_line", "expected"), [
    ("a.txt", "Hallo\tOTHER\tOTHER\n", "germeval2018"),
    ("a.tsv", "Hallo\tOTHER\tOTHER\n", "germeval2018"),
    ("a.csv", "comment_id,comment_text,Sub1_Toxic\n", "germeval2021"),
    ("a.csv", "text,label\n", "csv"),
    ("a.data", "text,label\n", "csv"),
    ("a.jsonl", '{"text": "x", "label": 1}\n', "jsonl"),
    ("a.txt", '{"text": "x", "label": 1}\n', "jsonl"),
])
def test_detect_format(tmp_path, name, first_line, expected):
    assert detect_format(_write(tmp_path / name, first_line)) == expected


def test_read_datasets_concatenates_and_keeps_groups_apart(tmp_path):
    a = _write(tmp_path / "a.txt", "@x eins\tOTHER\tOTHER\n")
    b = _write(tmp_path / "b.txt", "@x zwei\tOFFENSE\tINSULT\n")
    data = read_datasets([a, b])
    assert data.labels == [0, 1]
    assert data.groups == ["a.txt:@x", "b.txt:@x"]
    assert data.domains == ["tweet", "tweet"]
    assert [s["path"] for s in data.sources] == ["a.txt", "b.txt"]


GAHD_HEADER = "gahd_id,text,label,round,split,contrastive_gahd_id\n"


def test_gahd_csv_is_detected_and_read_as_it_is(tmp_path):
    path = _write(tmp_path / "gahd_train_dev.csv", GAHD_HEADER + (
        'a1,"Die da oben, alle gleich.",1,R1,train,b2\n'
        "b2,Die da oben sind nicht alle gleich.,0,R1,dev,a1\n"
        "c3,Ein Satz ohne Partner,0,R2,train,\n"
        '"d4","Noch einer, mit ""Zitat""",1,R4,dev,\n'
    ))
    assert detect_format(path) == "gahd"
    data = read_dataset(path)
    assert data.texts == ["Die da oben, alle gleich.", "Die da oben sind nicht alle gleich.",
                          "Ein Satz ohne Partner", 'Noch einer, mit "Zitat"']
    assert data.labels == [1, 0, 0, 1]
    assert data.categories == [None] * 4
    # GAHD's sentences are written to fool a classifier, not posted: a genre of their own.
    assert data.domains == ["gahd"] * 4
    assert data.groups[0] == data.groups[1]
    assert len({data.groups[0], data.groups[2], data.groups[3]}) == 3
    assert all(g.startswith("gahd_train_dev.csv:") for g in data.groups)
    assert data.sources[0]["format"] == "gahd" and data.sources[0]["rows"] == 4


def test_gahd_groups_follow_chains_of_contrastive_ids(tmp_path):
    # a->b, c->b, d->c: one connected set; e->f where f is not in the file (GAHD's test split) and g->f:
    # e and g share a group through the missing row; h stands alone; i names itself.
    path = _write(tmp_path / "gahd.csv", GAHD_HEADER + (
        "a,eins,1,R1,train,b\n"
        "b,zwei,0,R1,train,\n"
        "c,drei,1,R2,train,b\n"
        "d,vier,0,R2,dev,c\n"
        "e,fünf,1,R3,train,f\n"
        "g,sechs,0,R3,dev,f\n"
        "h,sieben,0,R4,train,\n"
        "i,acht,1,R4,train,i\n"
    ))
    groups = read_dataset(path).groups
    assert groups[0] == groups[1] == groups[2] == groups[3]
    assert groups[4] == groups[5]
    assert len(set(groups)) == 4


def test_gahd_pairs_never_straddle_a_grouped_split(tmp_path):
    from sklearn.model_selection import StratifiedGroupKFold

    lines = []
    for i in range(40):
        lines.append(f"x{i},Satz {i} gemein,1,R1,train,y{i}\n")
        lines.append(f"y{i},Satz {i} harmlos,0,R1,train,\n")
    data = read_dataset(_write(tmp_path / "gahd.csv", GAHD_HEADER + "".join(lines)))
    for train, test in StratifiedGroupKFold(n_splits=5).split(data.texts, data.labels, data.groups):
        held = {data.texts[i].split()[1] for i in test}
        assert held.isdisjoint({data.texts[i].split()[1] for i in train})


@pytest.mark.parametrize(("content", "where", "message"), [
    (GAHD_HEADER + "a,gut,1,R1,train,\na,nochmal,0,R1,train,\n", "gahd.csv:3", "gahd_id 'a' occurs twice"),
    (GAHD_HEADER + "a,gut,2,R1,train,\n", "gahd.csv:2", "label"),
    (GAHD_HEADER + ",gut,1,R1,train,\n", "gahd.csv:2", "gahd_id"),
    (GAHD_HEADER + "a,gut,1,R1,train\n", "gahd.csv:2", "columns"),
    ("gahd_id,text,round,split\na,gut,R1,train\n", "gahd.csv:1", "label"),
])
def test_malformed_gahd_rows_name_file_and_line(tmp_path, content, where, message):
    path = _write(tmp_path / "gahd.csv", content)
    with pytest.raises(DataError) as info:
        read_dataset(path)
    assert where in str(info.value)
    assert message in str(info.value)


def test_germeval2019_reads_like_germeval2018(tmp_path):
    # GermEval 2019 keeps the 2018 format (validation only: no licence stated for our copy).
    path = _write(tmp_path / "germeval2019_training_subtask12.txt",
                  "@Konto Alles Gute zum Start\tOTHER\tOTHER\n@konto Du Lappen|LBR|echt\tOFFENSE\tINSULT\n")
    data = read_dataset(path)
    assert data.sources[0]["format"] == "germeval2018"
    assert data.labels == [0, 1] and data.categories == [None, "insult"]
    assert data.groups[0] == data.groups[1] and data.domains == ["tweet", "tweet"]
