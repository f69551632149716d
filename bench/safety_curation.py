"""Our curation of the LDNOOBW lists into ``safety/lexicons/wordlists`` (categories, exclusions,
added roots). Applied by ``python bench/safety_data.py wordlists``; see SOURCE.md there."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path


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


def curated_lines(language: str, terms: list[str]) -> list[str]:
    """The rows of one packaged list, in file order."""
    rows = [
        f"{category(language, t)}\t{t}"
        for t in terms
        if t.lower() not in EXCLUDE.get(language, frozenset())
    ]
    rows += [f"{c}\t{t}*" for c, t in ROOTS[language]]
    rows += [f"{c}\t{t}" for c, t in EXTRA_WORDS.get(language, [])]
    return rows


def write_wordlists(sources: Mapping[str, list[str]], out: Path) -> None:
    """Write ``<lang>.tsv`` for every source list into ``out``."""
    for language, terms in sources.items():
        header = (
            f"# Curated from LDNOOBW ({language}.json of the npm package naughty-words 1.2.0,"
            " CC-BY-4.0);\n# see SOURCE.md. Format: category<TAB>term; a trailing * matches"
            " the term at the start of a word.\n"
        )
        body = "\n".join(curated_lines(language, terms)) + "\n"
        (out / f"{language}.tsv").write_text(header + body, encoding="utf-8")
