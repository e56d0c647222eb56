// Slack mrkdwn → safe HTML. The text is HTML-escaped first; formatting is applied to the
// escaped text only, so nothing from a message can become markup.
(function () {
  "use strict";

  function escapeHtml(text) {
    return String(text)
      .replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
      .replace(/"/g, "&quot;").replace(/'/g, "&#39;");
  }

  // Slack text carries its own entities (&amp; &lt; &gt; for literal & < >). Escaping made
  // them &amp;lt; and so on; one level back, they show as the characters Slack means.
  function slackEntities(html) {
    return html.replace(/&amp;(amp|lt|gt);/g, "&$1;");
  }

  // Emoji shortcodes as Slack draws them (the app writes :warning:, people write the rest);
  // one Slack does not know stays as typed, as in Slack.
  const EMOJI = {
    warning: "\u26a0\ufe0f", white_check_mark: "\u2705", heavy_check_mark: "\u2714\ufe0f",
    x: "\u274c", tada: "\ud83c\udf89", eyes: "\ud83d\udc40", thumbsup: "\ud83d\udc4d",
    "+1": "\ud83d\udc4d", thumbsdown: "\ud83d\udc4e", "-1": "\ud83d\udc4e",
    smile: "\ud83d\ude04", slightly_smiling_face: "\ud83d\ude42", pray: "\ud83d\ude4f",
    information_source: "\u2139\ufe0f", hourglass: "\u231b", rocket: "\ud83d\ude80",
  };

  function render(text, names) {
    names = names || {};
    const stash = [];
    const keep = function (html) {
      stash.push(html);
      return "\u0000" + (stash.length - 1) + "\u0000";
    };
    let html = escapeHtml(String(text || "").replace(/[\u0000\u0001]/g, ""));
    // A quoted line's marker is taken out first (\u0001 stands for it), so a code block inside
    // a quote shows its code, not the quote's ">" on each line; in a code block that is not
    // quoted, a ">" is the code's own and stays.
    html = html.replace(/^&gt;/gm, "\u0001");
    html = html.replace(/```([\s\S]*?)```/g, function (_, code, offset, whole) {
      const quoted = whole.charAt(whole.lastIndexOf("\n", offset - 1) + 1) === "\u0001";
      code = quoted ? code.replace(/\u0001 ?/g, "") : code.replace(/\u0001/g, "&gt;");
      return keep("<pre>" + slackEntities(code.replace(/^\n/, "")) + "</pre>");
    });
    html = html.replace(/`([^`\n]+)`/g, function (_, code) {
      return keep("<code>" + slackEntities(code) + "</code>");
    });
    html = html.replace(/&lt;@([UWB][A-Z0-9]+)(?:\|([^&]*))?&gt;/g, function (_, id, label) {
      const name = names[id] ? escapeHtml(names[id]) : (label || id);
      return keep('<span class="mention">@' + name + "</span>");
    });
    html = html.replace(/&lt;#([CGD][A-Z0-9]+)(?:\|([^&]*))?&gt;/g, function (_, id, label) {
      const name = names[id] ? escapeHtml(names[id]) : (label || id);
      return keep('<span class="mention">#' + name + "</span>");
    });
    html = html.replace(/&lt;(https?:\/\/[^|&\s]+)(?:\|([^&]+))?&gt;/g, function (_, url, label) {
      return keep('<a href="' + url + '" target="_blank" rel="noopener noreferrer">' +
        (label || url) + "</a>");
    });
    html = html.replace(/&lt;!(here|channel|everyone)&gt;/g, function (_, who) {
      return keep('<span class="mention">@' + who + "</span>");
    });
    html = html.replace(/:([a-z0-9_+-]+):/g, function (code, name) {
      return Object.prototype.hasOwnProperty.call(EMOJI, name) ? EMOJI[name] : code;
    });
    html = html.split("\n").map(function (line) {
      const quoted = /^\u0001 ?(.*)$/.exec(line);
      return quoted ? '<span class="quote">' + quoted[1] + "</span>" : line;
    }).join("\n");
    html = html.replace(/(^|[^\w*])\*(?!\s)([^*\n]+?)\*(?![\w*])/g, "$1<b>$2</b>");
    html = html.replace(/(^|[^\w_])_(?!\s)([^_\n]+?)_(?![\w_])/g, "$1<i>$2</i>");
    html = html.replace(/(^|[^\w~])~(?!\s)([^~\n]+?)~(?![\w~])/g, "$1<s>$2</s>");
    html = slackEntities(html);
    return html.replace(/\u0000(\d+)\u0000/g, function (_, i) { return stash[Number(i)]; });
  }

  window.hitlMrkdwn = { render: render, escapeHtml: escapeHtml };
})();
