"""`hitl demo` deletes only what it made, learns the user's own items whatever their script,
and its sandbox answers only its own page (no cross-site POST, no DNS-rebinding read)."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.demo import DemoOptions, load_data, running_demo
from bot.demo.run import CHANNEL, Demo, prepare_database
from model import TextClassifier

# ------------------------------------------------------------------ what the demo deletes


@pytest.mark.parametrize("folder", ["", "site#2"])
def test_the_demo_refuses_its_own_database_once_items_were_imported_into_it(
    tmp_path: Path, folder: str
):
    """`hitl --db hitl.db demo`, then `hitl import` of the team's items into ./hitl.db (the
    default): the demo's next start deleted them, its marker still beside the file (outside
    first-run test). In a folder named with "#" the look for them read the path as a URI
    whose fragment began there, found nothing, and the demo deleted them."""
    db = tmp_path / folder / "hitl.db"
    db.parent.mkdir(exist_ok=True)
    prepare_database(db)  # as the demo made it: its marker beside
    mine = db.with_name("mine.csv")
    mine.write_text("text,label\nmy precious ticket,billing\nanother real one,bug\n")
    assert CliRunner().invoke(cli, ["--db", str(db), "import", str(mine)]).exit_code == 0
    args = ["--db", str(db), "demo", "--port", "0", "--no-browser", "--simulate", "1"]
    result = CliRunner().invoke(cli, [*args, "--answers", "1", "--retrain-every", "0"])
    assert result.exit_code == 1, result.output
    assert result.output == (
        f"Error: {db} was made by hitl demo, but 2 items came into it since from outside the"
        " demo (hitl import); the demo recreates its database at every start, so pass another"
        " file (hitl --db demo.db demo), or delete hitl.db.demo to keep hitl.db as your own\n"
    )
    out = CliRunner().invoke(cli, ["--db", str(db), "export"])
    assert "my precious ticket" in out.stdout


@pytest.mark.parametrize("left", ["x.db.models", "x.db-wal"])
def test_the_demo_refuses_a_models_folder_or_wal_beside_a_missing_database(
    tmp_path: Path, left: str
):
    """A database moved aside (or restored) without its models folder: the demo deleted the
    folder, every trained model in it, because only the database file was checked."""
    path = tmp_path / left
    if left.endswith(".models"):
        path.mkdir()
        (path / "v7.skops").write_bytes(b"precious")
    else:
        path.write_bytes(b"precious")
    db = tmp_path / "x.db"
    args = ["--db", str(db), "demo", "--port", "0", "--no-browser", "--simulate", "1"]
    result = CliRunner().invoke(cli, [*args, "--answers", "1", "--retrain-every", "0"])
    assert result.exit_code == 1, result.output
    assert result.output == (
        f"Error: {path} exists and was not made by hitl demo; the demo would delete it at its "
        "start, so move it aside or pass another file (hitl --db demo.db demo)\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [left]  # nothing written beside it
    kept = path / "v7.skops" if path.is_dir() else path
    assert kept.read_bytes() == b"precious"


def test_the_demo_still_replaces_its_own_models_folder(tmp_path: Path):
    db = tmp_path / "demo.db"
    prepare_database(db)
    (tmp_path / "demo.db.models").mkdir()
    (tmp_path / "demo.db.models" / "v1.skops").write_bytes(b"old demo model")
    prepare_database(db)  # its marker is there: the demo made them
    assert not (tmp_path / "demo.db.models").exists()


# ------------------------------------------------------------ --data in any script


def _unspaced(rng: random.Random, words: dict[str, list[str]], filler: list[str]) -> list[dict]:
    rows = []
    for n in range(90):
        label = list(words)[n % len(words)]
        parts = [rng.choice(filler), rng.choice(words[label]), rng.choice(filler)]
        rows.append({"id": f"r{n}", "text": "".join(parts) + str(n), "label": label})
    return rows


CHINESE = (
    {
        "账单": ["月费比上个月贵", "退款还没到账", "发票开错了"],
        "账户": ["密码登录不了", "两步验证收不到短信", "账号被锁定"],
        "功能请求": ["希望增加深色模式", "建议支持导出表格", "能否加个搜索"],
    },
    ["您好", "紧急", "今天", "同事反映", "请尽快处理", "谢谢", "在线等"],
)
EMOJI = (
    {
        "💳": ["💳💸", "🧾💳", "💰❗"],
        "👤": ["🔑🚫", "👤🔒", "📱❓"],
        "💡": ["💡✨", "🌙🎨", "🔍➕"],
    },
    ["👋", "🙏", "🚨", "🤔", "!!", "😡"],
)


@pytest.mark.parametrize("script", [CHINESE, EMOJI], ids=["unspaced-chinese", "emoji-only"])
async def test_the_demo_learns_a_data_file_of_unspaced_chinese_or_emoji(
    tmp_path: Path, script: tuple[dict[str, list[str]], list[str]]
):
    """``--data`` used the word-only ``word_lr``: an unspaced sentence is one word, an emoji-only
    text none, so the held-out accuracy stayed at chance. It uses the product's default now."""
    path = tmp_path / "mine.jsonl"
    rows = _unspaced(random.Random(0), *script)
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", "utf-8")
    options = DemoOptions(db=tmp_path / "d.db", port=0, data=path, retrain_every=0)
    data = load_data(options, warn=lambda line: None)
    async with running_demo(options, data, echo=lambda line: None, background=False) as demo:
        pipeline = demo.settings.pipeline
    assert pipeline is not None
    model = TextClassifier(pipeline).fit(
        [item.text for item in data.pool], [data.truth[item.id] for item in data.pool]
    )
    right = sum(
        label == item.label
        for label, item in zip(
            model.predict([i.text for i in data.holdout]), data.holdout, strict=True
        )
    )
    assert right / len(data.holdout) >= 0.8, (pipeline, right, len(data.holdout))


def test_the_built_in_data_keeps_the_quick_word_pipeline():
    from bot.demo.run import demo_pipeline

    assert demo_pipeline(DemoOptions()) == "word_lr"
    assert demo_pipeline(DemoOptions(data=Path("x.csv"), pipeline="word_cnb")) == "word_cnb"


# ------------------------------------------------------------ the sandbox's own page only


@pytest.fixture
async def demo(tmp_path: Path) -> AsyncIterator[Demo]:
    options = DemoOptions(db=tmp_path / "demo.db", port=0, size=60, retrain_every=0, pace=0.0)
    async with running_demo(
        options, load_data(options), echo=lambda line: None, background=False
    ) as running:
        yield running


RETIRE = {"user": "U0ANA", "channel": CHANNEL[0], "text": "/hitl labels retire billing"}


async def test_a_cross_site_post_is_refused_and_changes_nothing(demo: Demo):
    """A web page's "simple" POST (text/plain, no preflight) retired a label as an admin."""
    port = demo.url.rsplit(":", 1)[1]
    body = json.dumps(RETIRE)
    async with aiohttp.ClientSession() as http:
        foreign = {"Origin": "http://evil.example", "Content-Type": "text/plain;charset=UTF-8"}
        async with http.post(f"{demo.url}/sandbox/command", data=body, headers=foreign) as r:
            assert r.status == 403, await r.text()
            assert (await r.json())["error"].startswith("Origin 'http://evil.example' is another")
        as_json = {"Origin": "http://evil.example", "Content-Type": "application/json"}
        async with http.post(f"{demo.url}/sandbox/command", data=body, headers=as_json) as r:
            assert r.status == 403
        plain = {"Content-Type": "text/plain"}  # no Origin (not a browser): JSON still needed
        async with http.post(f"{demo.url}/sandbox/command", data=body, headers=plain) as r:
            assert r.status == 415
        rebound = {"Host": f"attacker.example:{port}", "Content-Type": "application/json"}
        async with http.post(f"{demo.url}/sandbox/command", data=body, headers=rebound) as r:
            assert r.status == 403
    assert demo.rt.store.label_set_changes() == []
    assert not any("Labels now" in m["text"] for m in demo.sandbox.timeline("U0ANA", CHANNEL[0]))


async def test_the_pages_own_json_post_works_from_its_origin(demo: Demo):
    port = demo.url.rsplit(":", 1)[1]
    command = {"user": "U0ANA", "channel": CHANNEL[0], "text": "/hitl help"}
    async with aiohttp.ClientSession() as http:
        for host in ("127.0.0.1", "localhost", "[::1]"):
            origin = {"Origin": f"http://{host}:{port}", "Host": f"{host}:{port}"}
            async with http.post(
                f"{demo.url}/sandbox/command", json=command, headers=origin
            ) as response:
                assert response.status == 200, await response.text()
                assert (await response.json())["status"] == 200


async def test_another_host_name_cannot_read_the_sandbox(demo: Demo):
    """DNS rebinding: a page whose host name resolves to 127.0.0.1 read the whole workspace."""
    port = demo.url.rsplit(":", 1)[1]
    async with aiohttp.ClientSession() as http:
        for path in ("/sandbox/state", "/"):
            headers = {"Host": f"attacker.example:{port}"}
            async with http.get(f"{demo.url}{path}", headers=headers) as response:
                assert response.status == 403, path
                assert "items" not in await response.text()
            for host in (f"localhost:{port}", f"127.0.0.1:{port}"):
                async with http.get(f"{demo.url}{path}", headers={"Host": host}) as response:
                    assert response.status == 200, (path, host)
        other_port = {"Host": f"127.0.0.1:{int(port) + 1}"}
        async with http.get(f"{demo.url}/sandbox/state", headers=other_port) as response:
            assert response.status == 403


async def test_another_host_name_cannot_send_the_demo_bot_signed_commands(demo: Demo):
    """The sandbox's signing secret is published: through a rebinding page a foreign Host sent
    /slack/events a signed `/hitl labels retire` as an admin and got "Done"."""
    from tests import signing

    port = demo.url.rsplit(":", 1)[1]
    fields = signing.command_fields("labels", "U0ANA")
    body, headers = signing.signed_command(fields, "sandbox-signing-secret")
    async with aiohttp.ClientSession() as http:
        foreign = {**headers, "Host": f"attacker.example:{port}"}
        async with http.post(f"{demo.url}/slack/events", data=body, headers=foreign) as response:
            assert response.status == 403
        own = {**headers, "Host": f"127.0.0.1:{port}"}
        async with http.post(f"{demo.url}/slack/events", data=body, headers=own) as response:
            assert response.status == 200


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["demo", "--port", "70000"], {}),
        (["demo"], {"HITL_PORT": "99999"}),
        (["serve", "--port", "-5"], {}),
    ],
)
def test_a_port_out_of_range_is_one_line_and_makes_nothing(
    tmp_path: Path, args: list[str], env: dict[str, str]
):
    """A port over 65535 crashed with an OverflowError traceback after the demo had made its
    database and folders (outside first-run test)."""
    db = tmp_path / "demo.db"
    extra = ["--no-browser"] if args[0] == "demo" else []
    result = CliRunner().invoke(cli, ["--db", str(db), *args, *extra], env=env)
    assert result.exit_code == 2, result.output
    assert "is not in the range" in result.output and "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        (["demo"], {"HITL_PORT": "3_000"}, "HITL_PORT: '3_000'"),
        (
            ["demo", "--port", "\u0663\u0660\u0660\u0660"],
            {},
            "'--port': '\u0663\u0660\u0660\u0660'",
        ),
        (["serve", "--port", "3_000"], {}, "'--port': '3_000'"),
    ],
)
def test_a_port_not_written_in_digits_is_one_line_and_makes_nothing(
    tmp_path: Path, args: list[str], env: dict[str, str], named: str
):
    """click's int took 3_000 (Python's ``int``) where HITL_PORT in the settings is refused."""
    # a demo that would run stops after one answer (the old code ran it, not waiting on Ctrl-C)
    extra = ["--no-browser", "--simulate", "1", "--answers", "1"] if args[0] == "demo" else []
    result = CliRunner().invoke(cli, ["--db", str(tmp_path / "d.db"), *args, *extra], env=env)
    assert result.exit_code == 2, result.output
    assert result.output.splitlines()[-1] == (
        f"Error: Invalid value for {named} is not a whole number; write it in digits, e.g. 3000"
    )
    assert list(tmp_path.iterdir()) == []
