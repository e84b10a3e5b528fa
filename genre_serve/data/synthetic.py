"""Synthetic interactions with planted structure, for tests and demos.

Items belong to topics and their text is drawn from the topic's vocabulary.
Each user has a long-term taste (a few favourite topics) and drifts: a short
session on one topic at a time. The scenario sets which signal wins: in
``home`` the next item follows the long-term taste, in ``detail`` the current
session's topic, in ``search`` a mix. A model that reads item text, the whole
history, the recent items and the scenario can recover all of it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SCENARIOS = ("home", "search", "detail")
TOPIC_WORDS = [
    ["galaxy", "rocket", "orbit", "alien", "planet", "starship", "nebula", "astronaut"],
    ["detective", "murder", "clue", "suspect", "alibi", "crime", "witness", "inspector"],
    ["dragon", "wizard", "quest", "sword", "kingdom", "elf", "spell", "castle"],
    ["romance", "wedding", "love", "heart", "kiss", "letter", "dance", "proposal"],
    ["zombie", "haunted", "ghost", "scream", "curse", "blood", "night", "monster"],
    ["football", "coach", "stadium", "champion", "team", "match", "trophy", "season"],
    ["cowboy", "desert", "sheriff", "saloon", "horse", "outlaw", "frontier", "ranch"],
    ["robot", "hacker", "network", "android", "circuit", "matrix", "code", "machine"],
]
FILLER = ["story", "film", "journey", "life", "world", "secret", "day", "family", "friend", "city"]


def generate(
    num_users: int = 200,
    num_items: int = 300,
    mean_length: int = 30,
    num_topics: int = 8,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Raw (string-id) interactions and items frames, as the CSV loaders produce."""
    if not 1 <= num_topics <= len(TOPIC_WORDS):
        raise ValueError(f"num_topics: must be in [1, {len(TOPIC_WORDS)}]")
    rng = np.random.default_rng(seed)
    topic_of = rng.integers(0, num_topics, size=num_items)
    popularity = rng.pareto(1.5, size=num_items) + 1.0
    by_topic = [np.flatnonzero(topic_of == t) for t in range(num_topics)]
    items = pd.DataFrame(
        {
            "item_id": [f"i{i}" for i in range(num_items)],
            "title": [_title(rng, topic_of[i], i) for i in range(num_items)],
            "text": [_text(rng, topic_of[i]) for i in range(num_items)],
            "tags": ["" for _ in range(num_items)],
        }
    )
    rows = []
    for u in range(num_users):
        favourites = rng.choice(num_topics, size=min(2, num_topics), replace=False)
        length = max(6, int(rng.poisson(mean_length)))
        session_topic, session_left = rng.integers(num_topics), 0
        seen: set[int] = set()
        t = int(1_600_000_000 + rng.integers(0, 10_000_000))
        for _ in range(length):
            if session_left == 0:
                session_topic, session_left = rng.integers(num_topics), int(rng.integers(3, 8))
            session_left -= 1
            scenario = SCENARIOS[rng.integers(len(SCENARIOS))]
            p_session = {"home": 0.1, "search": 0.5, "detail": 0.9}[scenario]
            topic = session_topic if rng.random() < p_session else rng.choice(favourites)
            pool = [i for i in by_topic[topic] if i not in seen]
            if not pool:
                continue
            weights = popularity[pool] / popularity[pool].sum()
            item = int(rng.choice(pool, p=weights))
            seen.add(item)
            t += int(rng.integers(60, 3600))
            rows.append((f"u{u}", f"i{item}", t, scenario))
    interactions = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "scenario"])
    return interactions.astype({"timestamp": str}), items


def _title(rng, topic: int, i: int) -> str:
    words = rng.choice(TOPIC_WORDS[topic], size=2, replace=False)
    return f"The {words[0]} and the {words[1]} {i}"


def _text(rng, topic: int) -> str:
    words = list(rng.choice(TOPIC_WORDS[topic], size=5)) + list(rng.choice(FILLER, size=2))
    rng.shuffle(words)
    return "A " + " ".join(words) + "."
