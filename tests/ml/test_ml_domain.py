"""Domain adaptation: tweets train beside comments, and the model served scores every text as a comment."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression

from moderation.ml import load_model, train_and_save
from moderation.ml.pipeline import DomainAdaptedLogisticRegression, build_pipeline
from moderation.ml.train import NOT_CALIBRATED, fit_pipeline


def _data(seed: int = 0):
    rng = np.random.default_rng(seed)
    X = sparse.random(120, 12, density=0.4, random_state=seed, format="csr")
    y = rng.integers(0, 2, 120)
    domain = np.where(rng.random(120) < 0.6, "tweet", "comment")
    return X, y, domain


def _plain(**extra) -> LogisticRegression:
    return LogisticRegression(C=3.0, class_weight="balanced", solver="liblinear", random_state=0, max_iter=1000,
                              **extra)


@pytest.mark.parametrize("domain", [None, ["comment"] * 120, ["tweet"] * 120])
def test_one_domain_is_plain_logistic_regression(domain):
    X, y, _ = _data()
    adapted = DomainAdaptedLogisticRegression(C=3.0, class_weight="balanced", random_state=0).fit(X, y, domain=domain)
    plain = _plain().fit(X, y)
    assert np.array_equal(adapted.coef_, plain.coef_) and np.array_equal(adapted.intercept_, plain.intercept_)


@pytest.mark.parametrize("served", ["comment", "tweet", "forum"])
def test_two_domains_serve_the_shared_plus_the_served_block(served):
    X, y, domain = _data(1)
    adapted = DomainAdaptedLogisticRegression(C=3.0, class_weight="balanced", random_state=0,
                                              served_domain=served).fit(X, y, domain=domain)
    # The augmented matrix written out row by row: [x, x if comment, x if tweet] (blocks in name order).
    dense = X.toarray()
    rows = [np.concatenate([x, x * (d == "comment"), x * (d == "tweet")]) for x, d in zip(dense, domain, strict=True)]
    reference = _plain().fit(np.array(rows), y)
    shared, comment, tweet = np.split(reference.coef_[0], 3)
    expected = shared + {"comment": comment, "tweet": tweet, "forum": 0}[served]
    assert adapted.coef_.shape == (1, 12) and adapted.n_features_in_ == 12
    assert np.allclose(adapted.coef_[0], expected, atol=1e-8)
    assert np.allclose(adapted.intercept_, reference.intercept_, atol=1e-8)
    # It scores like an ordinary logistic regression over x.
    logit = dense @ expected + reference.intercept_[0]
    assert np.allclose(adapted.predict_proba(X)[:, 1], 1 / (1 + np.exp(-logit)), atol=1e-8)
    assert adapted.domains_ == ["comment", "tweet"]


def test_clone_keeps_the_served_domain_and_refuses_mismatched_domains():
    X, y, domain = _data()
    model = clone(DomainAdaptedLogisticRegression(C=2.0, served_domain="tweet", tol=1e-6))
    assert model.get_params()["served_domain"] == "tweet" and model.C == 2.0 and model.tol == 1e-6
    with pytest.raises(ValueError, match="120 rows but 119 domain labels"):
        model.fit(X, y, domain=list(domain[:-1]))
    with pytest.raises(ValueError, match="120 rows but 5 domain labels"):
        model.fit(X, y, domain=["comment"] * 5)  # one domain is checked too


def test_domain_labels_that_are_not_strings_still_adapt():
    X, y, _ = _data(2)
    numbered = DomainAdaptedLogisticRegression(C=3.0, class_weight="balanced", random_state=0,
                                               served_domain="1").fit(X, y, domain=[0, 1] * 60)
    named = DomainAdaptedLogisticRegression(C=3.0, class_weight="balanced", random_state=0,
                                            served_domain="b").fit(X, y, domain=["a", "b"] * 60)
    assert numbered.domains_ == ["0", "1"] and np.allclose(numbered.coef_, named.coef_)
    assert not np.allclose(numbered.coef_, _plain().fit(X, y).coef_)


def test_cross_validation_fits_each_fold_with_its_rows_domains():
    from sklearn.model_selection import StratifiedGroupKFold

    from moderation.ml.train import out_of_fold_scores
    texts = [f"{t} ({i})" for i in range(4) for t, _ in COMMENTS + TWEETS]
    labels = np.array([y for _ in range(4) for _, y in COMMENTS + TWEETS])
    domains = [d for _ in range(4) for d in ["comment"] * len(COMMENTS) + ["tweet"] * len(TWEETS)]
    groups = [f"g{i}" for i in range(len(texts))]
    params = {"min_df": 1, "max_df": 1.0}
    adapted, _ = out_of_fold_scores(texts, labels, groups, params, seed=0, n_jobs=1, domains=domains)
    plain, _ = out_of_fold_scores(texts, labels, groups, params, seed=0, n_jobs=1)
    expected = np.full(len(texts), np.nan)
    for train, test in StratifiedGroupKFold(n_splits=5, shuffle=True, random_state=0).split(texts, labels, groups):
        model = fit_pipeline(build_pipeline(params), [texts[i] for i in train], labels[train],
                             [domains[i] for i in train])
        expected[test] = model.predict_proba([texts[i] for i in test])[:, 1]
    assert np.allclose(adapted, expected, atol=1e-12)
    assert not np.allclose(adapted, plain)


def test_cross_fit_in_two_worker_processes_returns_the_folds_and_the_fit_on_all_rows(monkeypatch):
    from moderation.ml import train
    texts = [f"{t} ({i})" for i in range(4) for t, _ in COMMENTS + TWEETS]
    labels = np.array([y for _ in range(4) for _, y in COMMENTS + TWEETS])
    domains = [d for _ in range(4) for d in ["comment"] * len(COMMENTS) + ["tweet"] * len(TWEETS)]
    groups = [f"g{i}" for i in range(len(texts))]
    params = {"min_df": 1, "max_df": 1.0, "encoder_weight": None}
    expected_oof, _ = train.out_of_fold_scores(texts, labels, groups, params, seed=0, n_jobs=1, domains=domains)
    alone = fit_pipeline(build_pipeline(params), texts, labels, domains)
    monkeypatch.setattr(train, "SMALL_DATA_ROWS", 0)  # two real worker processes even for these few rows
    oof, folds, final = train.cross_fit(texts, labels, groups, params, seed=0, n_jobs=2, domains=domains)
    assert folds == 5 and np.allclose(oof, expected_oof, atol=1e-12)
    probes = ["Du Lachnummer", "Danke für den Artikel", "Halt die Fresse"]
    assert np.allclose(final.predict_proba(probes), alone.predict_proba(probes), atol=1e-12)
    assert final.named_steps["clf"].domains_ == ["comment", "tweet"]
    # Too few groups for two folds: only the final fit runs.
    few = slice(3, 7)  # two offensive comments, two friendly ones
    assert sorted(labels[few]) == [0, 0, 1, 1]
    oof, folds, final = train.cross_fit(texts[few], labels[few], ["g"] * 4, params, seed=0, domains=domains[few])
    assert oof is None and folds == 1 and final.predict_proba(probes).shape == (3, 2)


# A word that insults in comments but is harmless in the tweets (a comedian's fan account, say).
COMMENTS = [("Der Minister ist eine Lachnummer", 1), ("Was für eine Lachnummer, diese Partei", 1),
            ("Du Lachnummer hast keine Ahnung", 1), ("Du bist ein Idiot", 1), ("Halt die Fresse", 1),
            ("Danke für den Artikel", 0), ("Gut erklärt, vielen Dank", 0), ("Interessante Zahlen", 0),
            ("Ich sehe das anders", 0), ("Wann geht es weiter?", 0)]
TWEETS = [("Heute Abend Lachnummer live im Theater", 0), ("Lachnummer Tour 2018, Tickets ab Montag", 0),
          ("Die neue Lachnummer Folge ist online", 0), ("Du Vollidiot", 1), ("Verpiss dich", 1),
          ("Schönes Wetter heute", 0), ("Du Penner", 1), ("Was ein Depp", 1)]


def test_the_served_genre_decides_what_a_shared_word_means():
    texts = [t for t, _ in COMMENTS + TWEETS]
    labels = np.array([y for _, y in COMMENTS + TWEETS])
    domains = ["comment"] * len(COMMENTS) + ["tweet"] * len(TWEETS)
    scores = {}
    for served in ("comment", "tweet"):
        pipeline = build_pipeline({"min_df": 1, "max_df": 1.0})
        pipeline.set_params(clf__served_domain=served)
        scores[served] = fit_pipeline(pipeline, texts, labels, domains).predict_proba(["So eine Lachnummer"])[0, 1]
    plain = fit_pipeline(build_pipeline({"min_df": 1, "max_df": 1.0, "domain_adaptation": False}), texts, labels,
                         domains).predict_proba(["So eine Lachnummer"])[0, 1]
    assert scores["comment"] > plain > scores["tweet"]


def test_training_with_domains_validates_on_the_served_rows(tmp_path):
    rows = [(f"{t} ({i})", y, d) for i in range(4) for (t, y), d in
            [*((c, "comment") for c in COMMENTS), *((tw, "tweet") for tw in TWEETS)]]
    texts, labels, domains = zip(*rows, strict=True)
    meta = train_and_save(list(texts), list(labels), tmp_path / "m", domains=list(domains), seed=0)
    assert meta["domains"] == {"comment": 40, "tweet": 32} and meta["served_domain"] == "comment"
    assert set(meta["validation"]["by_domain"]) == {"comment", "tweet"}
    assert meta["validation"]["rows"] == meta["routing"]["rows"] == 40
    assert meta["validation"]["rows_from"] == "the comment rows"
    model = load_model(tmp_path / "m")
    assert model.pipeline.named_steps["clf"].domains_ == ["comment", "tweet"]
    for text in ("So eine Lachnummer", "Danke, gut erklärt", "Du Idiot 😂!!"):
        assert model.score(text).toxicity == pytest.approx(model.pipeline.predict_proba([text])[0, 1], abs=1e-9)


def test_a_model_trained_on_tweets_alone_decides_nothing_until_the_site_calibrates_it(tmp_path):
    """Tweets' scores say nothing of how comments score: no calibration, thresholds 0 and 1 (everything held)."""
    rows = [(f"{t} ({i})", y) for i in range(4) for t, y in TWEETS]
    texts, labels = zip(*rows, strict=True)
    meta = train_and_save(list(texts), list(labels), tmp_path / "m", domains=["tweet"] * len(texts), seed=0)
    assert "calibration" not in meta and meta["validation"]["rows_from"] == "all rows"
    assert (meta["routing"]["approve_threshold"], meta["routing"]["reject_threshold"]) == (0.0, 1.0)
    assert meta["routing"]["source"] == NOT_CALIBRATED
    model = load_model(tmp_path / "m")  # the service routes by these when a model carries no calibration
    assert (model.approve_threshold, model.reject_threshold) == (0.0, 1.0)
