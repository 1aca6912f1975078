"""The bot's GitHub Markdown as Slack mrkdwn (what the Slack app mode answers with)."""

from __future__ import annotations

from commands.render.slack import to_mrkdwn


def test_to_mrkdwn() -> None:
    md = ("<!-- tunebot:run:tb-1 -->\n### ⏳ run `tb-1`: queued\n\n**Bold** and *italic* and ~~gone~~, "
          "see [the card](https://github.com/o/r/pull/1#issuecomment-2) — @alice asked, @bob too; "
          "`a<b && **c**` stays code.\n\n| A | B |\n|---|:-:|\n| 1 | 2 |\n\n```python\nx = 1 < 2\n```\n"
          "<details><summary>More</summary>\n\ntext\n</details>")
    out = to_mrkdwn(md, slack_users={"alice": "U0ALICE0001"})
    assert "tunebot:run" not in out and "<details>" not in out and "<summary>" not in out
    assert out.startswith("*⏳ run `tb-1`: queued*")
    assert "*Bold* and _italic_ and ~gone~" in out
    assert "<https://github.com/o/r/pull/1#issuecomment-2|the card>" in out
    assert "<@U0ALICE0001> asked, @bob too" in out  # only mapped logins become Slack mentions
    assert "`a&lt;b &amp;&amp; **c**`" in out  # code is escaped, not reformatted
    assert "| 1 | 2 |" in out and "|---|" not in out
    assert to_mrkdwn("| `tuner` | lora\\|qlora | how |") == "| `tuner` | lora|qlora | how |"  # GitHub's cell escape
    assert "```\nx = 1 &lt; 2\n```" in out
    assert to_mrkdwn("Tom & Jerry <3") == "Tom &amp; Jerry &lt;3"
