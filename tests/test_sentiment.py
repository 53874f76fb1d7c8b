"""tuneloop.curation.sentiment with its real analyzers (no model loads): the language of a message, the multilingual
lexicons, English through VADER as before, uncovered languages as unknown, and the judge with a fake model."""

from __future__ import annotations

import json

import pytest

from tuneloop.curation import sentiment
from tuneloop.curation.sentiment import (
    COVERED_LANGUAGES,
    JudgeAnalyzer,
    Sentiment,
    analyze,
    analyze_many,
    detect_language,
)


@pytest.mark.parametrize(("text", "language"), [
    ("Спасибо, это именно то, что нужно", "ru"), ("Дякую, все працює", "uk"), ("Danke, das hat geholfen", "de"),
    ("Merci beaucoup, c'est parfait", "fr"), ("Gracias, me salvaste", "es"), ("Obrigado, ficou ótimo", "pt"),
    ("Grazie mille, perfetto", "it"), ("Bedankt, dat werkt", "nl"), ("Dzięki, działa", "pl"),
    ("Teşekkürler, harika oldu", "tr"), ("תודה רבה", "he"), ("شكرا جزيلا", "ar"), ("谢谢，太好了", "zh"),
    ("ありがとう、助かりました", "ja"), ("고마워요, 완벽해요", "ko"), ("Thanks, that is great!", "en"),
    ("спс!", "ru"), ("toll", "de"), ("valeu!", "pt"),
])
def test_the_language_of_short_turns(text: str, language: str) -> None:
    assert detect_language(text) == language


@pytest.mark.parametrize("text", ["", "   ", "👍", "42", "!!!", "🔥🔥"])
def test_no_letters_no_language(text: str) -> None:
    assert detect_language(text) is None


@pytest.mark.parametrize(("text", "label"), [
    ("Спасибо, отлично!", "positive"), ("Это неправильно, ответ неверный.", "negative"),
    ("Напиши функцию сортировки на Python", "neutral"), ("Спасибо, конечно, но это не помогло.", "negative"),
    ("תודה רבה, מעולה!", "positive"), ("זה לא נכון, טעות.", "negative"), ("אני משתמש בלינוקס", "neutral"),
    ("Super, genau das wollte ich!", "positive"), ("Das ist falsch, funktioniert nicht.", "negative"),
    ("Ich nutze Windows 11.", "neutral"), ("Nein, das stimmt nicht", "negative"),
    ("谢谢，太好了", "positive"), ("不对，这是错的", "negative"), ("我用的是Windows", "neutral"),
    ("不太好", "negative"), ("ありがとう、助かりました！", "positive"), ("間違ってるよ、動かない", "negative"),
    ("Windowsを使っています", "neutral"),
    ("je n'aime pas du tout", "negative"), ("n'importe quoi", "negative"),
])
def test_covered_languages_are_labelled(text: str, label: str) -> None:
    result = analyze(text)
    assert result.label == label, result
    assert result.language in COVERED_LANGUAGES
    assert -1.0 <= result.score <= 1.0


@pytest.mark.parametrize(("text", "language"), [
    ("Kiitos paljon, loistava vastaus!", "fi"), ("Takk fyrir, frábært svar!", "is"),
])
def test_an_uncovered_language_is_unknown(text: str, language: str) -> None:
    assert language not in COVERED_LANGUAGES
    assert analyze(text) == Sentiment("unknown", 0.0, language)
    assert analyze(text, "vader") == Sentiment("unknown", 0.0, language)


@pytest.mark.parametrize("text", [
    "Asante sana, hiyo ni nzuri!",  # fastText: Spanish at 0.17, and "sana" is a Spanish lexicon word
    "Asante, jibu hili limenisaidia.",  # fastText: English at 0.40
    "Huono vastaus.",  # Finnish; fastText: German at 0.45
    "Děkuji, moc mi to pomohlo!",  # Czech: ě is no letter of Polish
    "Mulțumesc frumos, m-a ajutat!",  # Romanian: ț is no letter of Portuguese
    "Okay, jeg prøver igen i morgen.",  # Danish
    "Masih error, tidak jalan",  # Indonesian with an English word
    "Sai rồi, làm lại đi",  # Vietnamese
    "To není to, na co jsem se ptal",  # Czech, made of words Portuguese also has
    "Ok, kiitos",  # Finnish: "ok" belongs to every language
])
def test_uncovered_languages_half_placed_in_covered_ones_stay_unknown(text: str) -> None:
    for analyzer in ("multilingual", "vader"):
        result = analyze(text, analyzer)
        assert result.label == "unknown" and result.language not in COVERED_LANGUAGES, (analyzer, result)


@pytest.mark.parametrize(("text", "language"), [
    ("Thanks José, that fixed it", "en"), ("Il caffè è pronto, grazie", "it"), ("e se o campo vier vazio?", "pt"),
    ("uso Mac", "es"), ("show de bola", "pt"),
])
def test_a_foreign_name_or_shared_words_do_not_unplace_a_covered_language(text: str, language: str) -> None:
    assert detect_language(text) == language


def test_a_sentence_nothing_places_is_unknown_not_neutral() -> None:
    result = analyze("Asante sana, jibu zuri kabisa!")
    assert result.label == "unknown"


@pytest.mark.parametrize("text", ["Thanks, that is great!", "This is wrong and useless.", "What is the capital?",
                                  "ok", "I love it, wonderful!", "This is terrible."])
def test_english_is_vader_exactly(text: str) -> None:
    compound = sentiment._vader().polarity_scores(text)["compound"]
    for analyzer in ("multilingual", "vader"):
        result = analyze(text, analyzer)
        assert result.score == compound and result.language == "en"
        assert result.label == ("positive" if compound >= 0.05 else "negative" if compound <= -0.05 else "neutral")


def test_the_vader_analyzer_leaves_other_languages_unknown() -> None:
    assert analyze("Спасибо, отлично!", "vader") == Sentiment("unknown", 0.0, "ru")


def test_emoji_and_empty_text() -> None:
    assert analyze("👍").label == "positive" and analyze("👍").language is None
    assert analyze("🤬👎").label == "negative"
    assert analyze("") == Sentiment("neutral", 0.0, None)
    assert analyze("42").label == "neutral"
    assert analyze("", "vader") == Sentiment("neutral", 0.0, None)


def test_analyze_many_and_bad_analyzer() -> None:
    assert [s.label for s in analyze_many(["Danke!", "Das ist falsch.", ""])] == ["positive", "negative", "neutral"]
    with pytest.raises(ValueError, match="judge"):
        analyze("hi", "judge")
    assert set(sentiment.ANALYZERS) == {"multilingual", "vader", "judge"}
    assert {"en", "ru", "uk", "de", "fr", "es", "pt", "it", "nl", "pl", "tr", "he", "ar", "zh", "ja",
            "ko"} <= COVERED_LANGUAGES


def test_the_judge_parses_its_answers_leniently() -> None:
    answers = iter([
        json.dumps({"label": "positive", "language": "ru"}),
        'Sure!\n```json\n{"label": "Negative", "language": "de"}\n```',
        "I think it is positive.",
        '{"label": "ecstatic"}',
    ])
    asked: list[list[dict]] = []

    def complete(messages: list[dict]) -> str:
        asked.append(messages)
        return next(answers)

    judge = JudgeAnalyzer(complete)
    results = judge.analyze_many(["Спасибо, отлично!", "Das ist falsch.", "hmm", "Merci"])
    assert len(asked) == 4 and "JSON" in asked[0][0]["content"] and "Спасибо" in asked[0][-1]["content"]
    assert results[0] == Sentiment("positive", 1.0, "ru")
    assert results[1] == Sentiment("negative", -1.0, "de")
    assert results[2].label == "unknown" and results[2].score == 0.0
    assert results[3] == Sentiment("unknown", 0.0, "fr")
