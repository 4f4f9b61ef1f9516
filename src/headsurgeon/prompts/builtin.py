"""The built-in diagnostic prompt set, written for headsurgeon.

Twelve prompts in six domains (prose, code, multilingual, technical, mathematics, repetitive),
two each, 90-200 tokens with common tokenizers. The diagnosis uses all of them so that per-head
spread across inputs is measured rather than assumed; the extreme-token study uses the domains
to find heads that are dormant on some inputs and active on others.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Prompt:
    name: str
    domain: str
    text: str


DOMAINS = ("prose", "code", "multilingual", "technical", "math", "repetitive")

BUILTIN_PROMPTS: tuple[Prompt, ...] = (
    Prompt("harbour-morning", "prose", (
        "The ferry left the harbour a little after six, while the fish market was still hosing down its "
        "stalls. Marta stood at the rail with a paper cup of coffee that had gone cold before she noticed. "
        "Her brother had promised to meet her on the island, but his last message had arrived two days "
        "ago and said only that the roof of the old house was leaking again. She watched the gulls follow "
        "the wake and tried to remember which of the three keys on her ring opened the garden gate. The "
        "wind smelled of diesel and seaweed, and somewhere below deck a radio was playing a song she had "
        "not heard since school."
    )),
    Prompt("village-library", "prose", (
        "Every Thursday the village library stayed open late, and every Thursday the same four people "
        "came. The retired teacher read the newspapers from front to back and folded them more neatly "
        "than he had found them. Two sisters argued quietly over crime novels, each insisting the other "
        "had already read the one she wanted. The fourth visitor, a boy of about twelve, borrowed books "
        "about bridges and returned them a week later with pencil sketches tucked between the pages. "
        "Nobody ever asked him about the drawings, and the librarian, who kept every one of them in a "
        "drawer, never mentioned that either."
    )),
    Prompt("python-inventory", "code", (
        "from dataclasses import dataclass, field\n\n\n@dataclass\nclass Inventory:\n"
        "    items: dict[str, int] = field(default_factory=dict)\n\n"
        "    def add(self, name: str, count: int = 1) -> None:\n"
        "        if count <= 0:\n            raise ValueError(f\"count must be positive, got {count}\")\n"
        "        self.items[name] = self.items.get(name, 0) + count\n\n"
        "    def remove(self, name: str, count: int = 1) -> bool:\n"
        "        have = self.items.get(name, 0)\n        if have < count:\n            return False\n"
        "        if have == count:\n            del self.items[name]\n        else:\n"
        "            self.items[name] = have - count\n        return True\n\n"
        "    def total(self) -> int:\n        return sum(self.items.values())\n"
    )),
    Prompt("js-debounce", "code", (
        "// Delay calls to fn until the user has stopped typing for `wait` milliseconds.\n"
        "function debounce(fn, wait = 250) {\n  let timer = null;\n  return function (...args) {\n"
        "    if (timer !== null) {\n      clearTimeout(timer);\n    }\n    timer = setTimeout(() => {\n"
        "      timer = null;\n      fn.apply(this, args);\n    }, wait);\n  };\n}\n\n"
        "const search = document.querySelector('#search');\nconst results = document.querySelector('#results');\n"
        "search.addEventListener('input', debounce(async (event) => {\n"
        "  const response = await fetch(`/api/find?q=${encodeURIComponent(event.target.value)}`);\n"
        "  const rows = await response.json();\n"
        "  results.innerHTML = rows.map((row) => `<li>${row.title}</li>`).join('');\n}, 300));\n"
    )),
    Prompt("french-market", "multilingual", (
        "Le samedi matin, le marché de la place occupe toute la rue principale. Les maraîchers arrivent "
        "avant l'aube pour installer leurs étals de tomates, de courgettes et de fraises. Vers neuf heures, "
        "les habitants viennent avec leurs paniers et discutent longuement du temps qu'il fera dimanche. "
        "Le fromager propose de goûter un comté affiné pendant dix-huit mois, et la boulangère vend ses "
        "dernières baguettes bien avant midi. Quand les cloches sonnent, on replie les parasols et la "
        "place redevient silencieuse jusqu'à la semaine suivante."
    )),
    Prompt("german-spanish-travel", "multilingual", (
        "Der Zug nach München hatte zwanzig Minuten Verspätung, also setzten wir uns in das kleine Café "
        "am Bahnhof und bestellten zwei Tassen Tee. Draußen regnete es ununterbrochen, und die Fahrgäste "
        "drängten sich unter dem schmalen Vordach. "
        "Al llegar a Sevilla, el calor de la tarde nos obligó a buscar la sombra de los naranjos. "
        "Caminamos por calles estrechas hasta una plaza tranquila, donde un hombre mayor tocaba la "
        "guitarra junto a una fuente. Cenamos tarde, como todo el mundo, y volvimos al hotel pasada la "
        "medianoche."
    )),
    Prompt("tcp-handshake", "technical", (
        "A TCP connection begins with a three-way handshake. The client sends a SYN segment carrying its "
        "initial sequence number; the server answers with a SYN-ACK that acknowledges the client's number "
        "and announces its own; the client completes the exchange with an ACK. Only then may either side "
        "send data. Each end keeps a receive window that limits how many unacknowledged bytes the peer may "
        "have in flight, and congestion control reduces the sending rate when segments are lost. Closing "
        "a connection takes four segments, because each direction is shut down independently with a FIN "
        "and its acknowledgement."
    )),
    Prompt("backup-policy", "technical", (
        "Backups are taken nightly at 02:00 UTC and retained for thirty days; the first backup of each "
        "month is kept for one year. Every backup is encrypted with a key held in the hardware security "
        "module and copied to a second region within one hour. A restore test runs every Monday against "
        "a randomly chosen backup from the previous week, and its result is posted to the operations "
        "channel. If a restore test fails, the on-call engineer must open an incident, identify whether "
        "the fault lies in the backup, the storage layer or the restore tooling, and record the recovery "
        "time that a real outage would have suffered."
    )),
    Prompt("geometric-series", "math", (
        "Let S = 1 + r + r^2 + ... + r^(n-1) for a real number r different from 1. Multiplying by r gives "
        "rS = r + r^2 + ... + r^n, and subtracting the two equations leaves S - rS = 1 - r^n. Hence "
        "S = (1 - r^n) / (1 - r). If |r| < 1, then r^n tends to 0 as n grows, so the infinite series "
        "converges to 1 / (1 - r). For example, with r = 1/2 the partial sums are 1, 1.5, 1.75, 1.875, "
        "and they approach 2. With r = -1/3 the limit is 1 / (1 + 1/3) = 3/4, and the partial sums "
        "alternate above and below that value."
    )),
    Prompt("linear-system", "math", (
        "Solve the system 2x + 3y = 12 and x - y = 1. From the second equation, x = y + 1. Substituting "
        "into the first gives 2(y + 1) + 3y = 12, so 5y + 2 = 12 and y = 2. Then x = 3. Check: "
        "2*3 + 3*2 = 12 and 3 - 2 = 1. In matrix form the system is A v = b with A = [[2, 3], [1, -1]], "
        "v = [x, y] and b = [12, 1]. The determinant of A is 2*(-1) - 3*1 = -5, which is not zero, so "
        "the solution is unique. By Cramer's rule, x = (12*(-1) - 3*1) / (-5) = 3 and "
        "y = (2*1 - 12*1) / (-5) = 2."
    )),
    Prompt("counting-list", "repetitive", (
        "item 1, item 2, item 3, item 4, item 5, item 6, item 7, item 8, item 9, item 10, item 11, "
        "item 12, item 13, item 14, item 15, item 16, item 17, item 18, item 19, item 20, item 21, "
        "item 22, item 23, item 24, item 25, item 26, item 27, item 28, item 29, item 30, item 31, "
        "item 32, item 33, item 34, item 35, item 36, item 37, item 38, item 39, item 40"
    )),
    Prompt("repeated-chorus", "repetitive", (
        "row, row, row the boat, row, row, row the boat, row, row, row the boat. "
        "The cat sat on the mat. The cat sat on the mat. The cat sat on the mat. The cat sat on the mat. "
        "The cat sat on the mat. The cat sat on the mat. The cat sat on the mat. The cat sat on the mat. "
        "la la la la la la la la la la la la la la la la la la la la la la la la la la la la la la. "
        "yes no yes no yes no yes no yes no yes no yes no yes no yes no yes no yes no yes no."
    )),
)


def builtin_prompts(domains: list[str] | tuple[str, ...] | None = None) -> list[Prompt]:
    """The built-in prompts, optionally restricted to some domains."""
    if domains is None:
        return list(BUILTIN_PROMPTS)
    return [p for p in BUILTIN_PROMPTS if p.domain in set(domains)]
