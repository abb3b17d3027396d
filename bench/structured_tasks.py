"""Fifty JSON-schema tasks for ``bench/structured.py``, written by hand for it.

Each schema is small and modelled on a public schema kind (schema.org types such as
PostalAddress, Product, Event, Person, Order, Book, Recipe, JobPosting; JSON Schema's own
examples: a geographical location, a calendar entry, a card; common API payloads). Strings carry
a ``maxLength`` and arrays a ``maxItems`` where a real schema would bound them, so one answer
fits the bench's token budget; enums, integer ranges, booleans, nested objects and arrays of
objects are all represented. Prompts ask for one plausible instance.
"""

from __future__ import annotations

from typing import Any

__all__ = ["AUTO_TOOLS", "NEEDS_TOOL", "NO_TOOL", "TASKS"]


def _s(n: int = 40, **kw: Any) -> dict[str, Any]:
    return {"type": "string", "maxLength": n, **kw}


def _i(lo: int, hi: int) -> dict[str, Any]:
    return {"type": "integer", "minimum": lo, "maximum": hi}


def _n(lo: float, hi: float) -> dict[str, Any]:
    return {"type": "number", "minimum": lo, "maximum": hi}


def _e(*values: str) -> dict[str, Any]:
    return {"enum": list(values)}


def _a(items: dict[str, Any], most: int = 3) -> dict[str, Any]:
    return {"type": "array", "items": items, "minItems": 1, "maxItems": most}


def _o(required: str = "", **properties: Any) -> dict[str, Any]:
    """An object of ``properties``; ``required`` names them space-separated ("*": all)."""
    names = list(properties) if required == "*" else required.split()
    return {"type": "object", "properties": properties, "required": names}


_BOOL = {"type": "boolean"}
_ADDRESS = _o("*", street=_s(), city=_s(30), postal_code=_s(10), country=_s(30))

TASKS: list[tuple[str, str, dict[str, Any]]] = [
    ("postal_address", "The postal address of the Louvre museum.", _ADDRESS),
    ("person", "A short profile of Marie Curie.", _o("*", name=_s(), birth_year=_i(1000, 2025), nationality=_s(30))),
    ("product", "A product listing for a stainless steel water bottle.",
     _o("*", name=_s(), sku=_s(12), price=_n(0, 10000), currency=_e("USD", "EUR", "GBP"), in_stock=_BOOL)),
    ("event", "A concert event in Vienna next spring.",
     _o("*", name=_s(), start_date=_s(10, pattern=r"^\d{4}-\d{2}-\d{2}$"), venue=_s(), city=_s(30))),
    ("order", "An online order of two books.",
     _o("*", order_id=_s(12), items=_a(_o("*", title=_s(), quantity=_i(1, 10)), 2), total=_n(0, 1000))),
    ("book", "The book Nineteen Eighty-Four.",
     _o("*", title=_s(), author=_s(), year=_i(1400, 2025), genre=_e("fiction", "non-fiction", "poetry"))),
    ("movie", "The film Casablanca.", _o("*", title=_s(), director=_s(), year=_i(1890, 2025), rating=_n(0, 10))),
    ("recipe", "A simple pancake recipe.",
     _o("*", name=_s(), servings=_i(1, 12), ingredients=_a(_s(30), 4), minutes=_i(1, 300))),
    ("job_posting", "A job posting for a junior data analyst.",
     _o("*", title=_s(), company=_s(), remote=_BOOL, salary_min=_i(0, 500000), level=_e("junior", "mid", "senior"))),
    ("geo", "The geographic coordinates of Tokyo.", _o("*", latitude=_n(-90, 90), longitude=_n(-180, 180))),
    ("calendar", "A calendar entry for a dentist appointment.",
     _o("*", summary=_s(), date=_s(10, pattern=r"^\d{4}-\d{2}-\d{2}$"), duration_minutes=_i(5, 480))),
    ("card", "A business card for a software engineer.", _o("*", full_name=_s(), title=_s(), email=_s(50), phone=_s(20))),
    ("organization", "The organization UNICEF.", _o("*", name=_s(), founded=_i(1800, 2025), headquarters=_s(30))),
    ("restaurant", "A pizza restaurant in Naples.",
     _o("*", name=_s(), cuisine=_s(20), price_range=_e("$", "$$", "$$$"), address=_ADDRESS)),
    ("review", "A short review of a coffee machine.",
     _o("*", product=_s(), stars=_i(1, 5), summary=_s(80), recommend=_BOOL)),
    ("weather", "Today's weather report for Oslo.",
     _o("*", city=_s(30), temperature_c=_n(-60, 60), condition=_e("sunny", "cloudy", "rain", "snow"))),
    ("flight", "A flight from London to New York.",
     _o("*", flight_number=_s(8), origin=_s(3), destination=_s(3), departure=_s(5, pattern=r"^\d{2}:\d{2}$"))),
    ("hotel", "A hotel booking for two nights in Rome.",
     _o("*", hotel=_s(), check_in=_s(10), nights=_i(1, 30), guests=_i(1, 8))),
    ("invoice", "An invoice for web design work.",
     _o("*", invoice_number=_s(12), client=_s(), amount=_n(0, 100000), paid=_BOOL)),
    ("payment", "A card payment of 25 euros.",
     _o("*", amount=_n(0, 100000), currency=_e("EUR", "USD"), method=_e("card", "cash", "transfer"), status=_s(15))),
    ("user_account", "A user account for a forum.",
     _o("*", username=_s(20), email=_s(50), age=_i(13, 120), verified=_BOOL)),
    ("contact", "A contact entry for a plumber.", _o("name phone", name=_s(), phone=_s(20), notes=_s(60))),
    ("course", "A university course on linear algebra.",
     _o("*", code=_s(10), title=_s(), credits=_i(1, 10), instructor=_s())),
    ("vehicle", "A used car for sale.", _o("*", make=_s(20), model=_s(20), year=_i(1950, 2026), mileage_km=_i(0, 10**6))),
    ("medication", "The medication ibuprofen.",
     _o("*", name=_s(30), dose_mg=_i(1, 2000), form=_e("tablet", "syrup", "capsule"), prescription=_BOOL)),
    ("country", "The country Japan.", _o("*", name=_s(30), capital=_s(30), population=_i(0, 2 * 10**9), continent=_s(20))),
    ("city", "The city of Barcelona.", _o("*", name=_s(30), country=_s(30), population=_i(0, 5 * 10**7))),
    ("song", "The song Yesterday by the Beatles.", _o("*", title=_s(), artist=_s(), year=_i(1900, 2026), seconds=_i(1, 3600))),
    ("podcast_episode", "An episode of a science podcast.",
     _o("*", show=_s(), episode=_i(1, 5000), title=_s(), minutes=_i(1, 300))),
    ("sports_match", "A football match result.",
     _o("*", home=_s(30), away=_s(30), home_goals=_i(0, 20), away_goals=_i(0, 20))),
    ("todo", "A to-do item to buy groceries.",
     _o("*", task=_s(60), done=_BOOL, priority=_e("low", "medium", "high"))),
    ("shopping_list", "A shopping list for breakfast.", _o("*", items=_a(_s(20), 4))),
    ("meeting", "A team meeting about the budget.",
     _o("*", topic=_s(), attendees=_a(_s(20), 3), minutes=_i(5, 240))),
    ("package", "A Python package on PyPI.",
     _o("*", name=_s(30), version=_s(12, pattern=r"^\d+\.\d+\.\d+$"), license=_s(20))),
    ("repository", "A GitHub repository for a web framework.",
     _o("*", owner=_s(30), name=_s(30), stars=_i(0, 10**6), language=_s(20))),
    ("http_request", "An HTTP request that fetches a user profile.",
     _o("*", method=_e("GET", "POST", "PUT", "DELETE"), path=_s(40), authenticated=_BOOL)),
    ("log_entry", "A server log entry for a failed login.",
     _o("*", level=_e("debug", "info", "warning", "error"), message=_s(80), code=_i(100, 599))),
    ("sensor_reading", "A temperature sensor reading.",
     _o("*", sensor_id=_s(12), value=_n(-100, 200), unit=_e("C", "F"))),
    ("animal", "The animal red fox.", _o("*", common_name=_s(30), species=_s(40), legs=_i(0, 100), endangered=_BOOL)),
    ("plant", "The plant sunflower.", _o("*", name=_s(30), family=_s(30), height_cm=_i(1, 10000))),
    ("chemical_element", "The chemical element oxygen.",
     _o("*", name=_s(20), symbol=_s(3), atomic_number=_i(1, 118), metal=_BOOL)),
    ("planet", "The planet Mars.", _o("*", name=_s(20), moons=_i(0, 200), rings=_BOOL)),
    ("painting", "The painting Mona Lisa.", _o("*", title=_s(), artist=_s(), year=_i(1000, 2026), museum=_s())),
    ("museum", "The British Museum.", _o("*", name=_s(), city=_s(30), free_entry=_BOOL)),
    ("train", "A train from Paris to Lyon.",
     _o("*", operator=_s(20), origin=_s(30), destination=_s(30), stops=_a(_s(30), 3))),
    ("classroom", "A primary school class.",
     _o("*", teacher=_s(), students=_i(1, 60), subjects=_a(_s(20), 3))),
    ("team", "A small software team.",
     _o("*", name=_s(30), members=_a(_o("*", name=_s(30), role=_s(20)), 2))),
    ("quiz_question", "A trivia question about geography.",
     _o("*", question=_s(80), options=_a(_s(30), 4), answer_index=_i(0, 3))),
    ("nutrition", "Nutrition facts for an apple.",
     _o("*", food=_s(30), calories=_i(0, 2000), protein_g=_n(0, 100), sugar_g=_n(0, 100))),
    ("ticket", "A support ticket about a broken laptop screen.",
     _o("*", subject=_s(60), severity=_e("low", "normal", "urgent"), customer=_s(30), open=_BOOL)),
]  # fmt: skip


def _tool(name: str, description: str, **properties: Any) -> dict[str, Any]:
    parameters = {"type": "object", "properties": properties, "required": list(properties)}
    return {
        "type": "function",
        "function": {"name": name, "description": description, "parameters": parameters},
    }


# tool_choice "auto": may the model answer in text or call? Questions that need a tool, and not.
AUTO_TOOLS = [
    _tool("get_weather", "The current weather in a city", city=_s(30), unit=_e("c", "f")),
    _tool("get_time", "The current local time in a city", city=_s(30)),
]
NEEDS_TOOL = [
    "What is the weather in Paris right now?", "What time is it in Tokyo?", "Is it raining in London today?",
    "How warm is it in Madrid at the moment?", "Tell me the current time in New York.",
    "What's the temperature in Berlin?", "Check the weather in Sydney for me.", "What is the local time in Dubai?",
]  # fmt: skip
NO_TOOL = [
    "Tell me a joke.", "What is 2 + 2?", "Who wrote Hamlet?", "Translate 'thank you' into French.",
    "Give me a synonym for happy.", "What is the capital of Italy?", "Write a haiku about the sea.",
    "Name three primary colours.",
]  # fmt: skip
