// The sandbox page: draws what one person sees (from GET /sandbox/state, long-polled) and sends
// what they do to POST /sandbox/*; the server turns it into signed Slack requests to the bot.
(function () {
  "use strict";
  const md = window.hitlMrkdwn;
  const $ = function (id) { return document.getElementById(id); };
  const S = {
    user: new URLSearchParams(location.search).get("user") || localStorage.getItem("hitl.user"),
    place: { kind: "channel", id: null }, // kind: channel, home (the app's Home) or dm (its Messages)
    // user -> how many of their direct messages with the app they have looked at, in the
    // workspace's run `instance` (kept across reloads: a message read stays read; a demo started
    // again is a new workspace, whose messages are all new)
    seen: JSON.parse(localStorage.getItem("hitl.seen") || "{}"),
    state: null,
    poll: null,
    inputs: {}, // what the person chose in the open modal's input blocks: block_id -> action_id -> value
    // (a type-ahead's: the option picked, its text and value)
    inputsFor: null, // the view (id and hash) those choices were made in
    drawn: {}, // part of the page -> the JSON it was last drawn from (redraw only what changed)
    returnFocus: null, // where the focus was before the modal opened
  };

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(function ([key, value]) {
      if (value === undefined || value === null) return;
      if (key === "text") node.textContent = value;
      else if (key === "html") node.innerHTML = value; // only ever output of md.render
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value);
    });
    (children || []).forEach(function (child) { if (child) node.appendChild(child); });
    return node;
  }

  function mrkdwn(text) {
    return el("div", { class: "mrkdwn", html: md.render(text, names()) });
  }

  function names() {
    const all = Object.assign({}, (S.state && S.state.names) || {});
    ((S.state && S.state.channels) || []).forEach(function (c) { all[c.id] = c.name; });
    return all;
  }

  function textObject(obj) {
    if (!obj) return el("span");
    if (obj.type === "mrkdwn") return mrkdwn(obj.text);
    return el("div", { class: "mrkdwn", text: obj.text });
  }

  function count(n, word) {
    return n + " " + word + (n === 1 ? "" : "s");
  }

  function toast(message) {
    const box = $("toast");
    box.textContent = message;
    box.hidden = false;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(function () { box.hidden = true; }, 6000);
  }

  // The page outlives the demo: a request that cannot reach it says so, and stays said until
  // the demo answers again (a click did nothing, the error only in the browser's console).
  const STOPPED = "The demo has stopped: start it again with hitl demo";

  function stopped() {
    const box = $("toast");
    clearTimeout(toast.timer);
    box.textContent = STOPPED;
    box.hidden = false;
    S.stopped = true;
  }

  function reachable() {
    if (!S.stopped) return;
    S.stopped = false;
    $("toast").hidden = true;
    // A demo started again was never told the Home tab is open: it publishes no Home until
    // it is (the page said "Opening the app's Home…" until the person clicked Home again).
    if (S.place.kind === "home") post("/sandbox/home", {});
  }

  async function post(path, body) {
    let response;
    try {
      response = await fetch(path, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(Object.assign({ user: S.user }, body)),
      });
    } catch (error) { // no answer at all: the demo stopped (a TypeError, "Failed to fetch")
      stopped();
      return { error: STOPPED };
    }
    reachable();
    const data = await response.json();
    if (!response.ok) toast(data.error || "The sandbox could not do that");
    // (an unknown command's 404 is said in the channel: "/foo is not a valid command")
    else if (data.status && data.status !== 200 && !(path === "/sandbox/command" && data.status === 404)) {
      toast("The app answered HTTP " + data.status);
    }
    return data;
  }

  // -------------------------------------------------------------- Block Kit

  function renderBlocks(blocks, where) {
    const box = el("div", { class: "blocks" });
    (blocks || []).forEach(function (block) { box.appendChild(renderBlock(block, where)); });
    return box;
  }

  function renderBlock(block, where) {
    switch (block.type) {
      case "header":
        return el("div", { class: "b-header", text: (block.text || {}).text });
      case "divider":
        return el("hr", { class: "b-divider" });
      case "section": {
        const parts = [];
        if (block.text) parts.push(textObject(block.text));
        if (block.fields) parts.push(el("div", { class: "b-fields" }, block.fields.map(textObject)));
        const body = el("div", { class: "b-section-body" }, parts);
        const kids = [body];
        if (block.accessory) kids.push(renderElement(block.accessory, block, where));
        return el("div", { class: "b-section" }, kids);
      }
      case "context":
        return el("div", { class: "b-context" }, (block.elements || []).map(function (item) {
          if (item.type === "image") return el("img", { src: item.image_url, alt: item.alt_text });
          return textObject(item);
        }));
      case "image":
        return el("figure", { class: "b-image" }, [
          block.title ? el("figcaption", { text: block.title.text }) : null,
          el("img", { src: block.image_url, alt: block.alt_text }),
        ]);
      case "actions":
        return el("div", { class: "b-actions", "data-block-id": block.block_id },
          (block.elements || []).map(function (item) { return renderElement(item, block, where); }));
      case "markdown":
        return mrkdwn(block.text);
      case "input":
        return renderInput(block, where);
      default:
        return el("div", { class: "unsupported", text: "[" + block.type + " block]" });
    }
  }

  function act(element, block, where, value) {
    return post("/sandbox/action", Object.assign({
      action_id: element.action_id, block_id: block.block_id, value: value,
    }, where));
  }

  function renderElement(element, block, where) {
    if (element.type === "button") {
      const button = el("button", {
        class: "btn" + (element.style ? " " + element.style : ""),
        type: "button",
        "data-action-id": element.action_id,
        text: (element.text || {}).text,
      });
      button.addEventListener("click", async function (event) {
        // A double click is one click: its second half (detail 2) would land on what the first
        // drew in its place (the window's next item, the message below), an answer never meant.
        if (event.detail > 1) return;
        // Disabled, a focused button drops the focus to the page: taken back once it is done
        // (on the redrawn message, or the next one: ``restoreFocus``)
        const focus = document.activeElement === button ? focusKey() : null;
        button.disabled = true;
        try { await act(element, block, where); } finally { button.disabled = false; restoreFocus(focus); }
      });
      return button;
    }
    if (element.type === "static_select") {
      const select = selectFor(element, { "aria-label": (element.placeholder || {}).text || "Choose" });
      // A pick is a mouse pick or Enter, as in Slack's menu: the arrow keys on the closed menu
      // change its value (and fire "change") while the person only looks through the labels.
      let browsing = false;
      const pick = function () {
        browsing = false;
        if (select.value) act(element, block, where, select.value);
      };
      select.addEventListener("keydown", function (event) {
        if (event.key === "Enter") {
          event.preventDefault();
          pick();
        } else if (event.key === " " || event.key === "F4" || event.altKey) {
          browsing = false; // the menu opens: a choice made in it is a pick
        } else if (/^(Arrow|Page|Home$|End$)/.test(event.key) || event.key.length === 1) {
          browsing = true;
        }
      });
      select.addEventListener("pointerdown", function () { browsing = false; });
      select.addEventListener("change", function () { if (!browsing) pick(); });
      select.addEventListener("blur", function () { // left without Enter: nothing was picked
        if (browsing) { browsing = false; select.value = ""; }
      });
      return select;
    }
    if (element.type === "external_select") {
      return typeahead(element, block, where, {}, function (o) { act(element, block, where, o.value); }).box;
    }
    if (element.type === "image") return el("img", { src: element.image_url, alt: element.alt_text, width: "64" });
    return el("span", { class: "unsupported", text: "[" + element.type + "]" });
  }

  // An external select: what is typed is sent as a block_suggestion, and a click on one of the
  // options the app answered is handed to ``picked`` (a block_actions in a message or beside
  // a view's blocks; in an input block, kept for the submission, as Slack does).
  function typeahead(element, block, where, attrs, picked) {
    const list = el("div", { class: "ext-options", hidden: "" });
    const input = el("input", Object.assign({ type: "text", placeholder: (element.placeholder || {}).text || "Search…",
      "data-action-id": element.action_id }, attrs));
    async function suggest() {
      const data = await post("/sandbox/options", Object.assign({
        action_id: element.action_id, block_id: block.block_id, value: input.value,
      }, where));
      list.replaceChildren(...(data.options || []).map(function (o) {
        return el("button", { type: "button", text: o.text.text, onclick: function () {
          list.hidden = true; picked(o);
        } });
      }));
      list.hidden = false;
    }
    input.addEventListener("focus", suggest);
    input.addEventListener("input", suggest);
    return { box: el("div", { class: "ext-select" }, [input, list]), input: input };
  }

  // A static select's options, or its option_groups as <optgroup>s (Slack takes one or the other).
  function selectFor(element, attrs) {
    const select = el("select", Object.assign({ class: "b-select", "data-action-id": element.action_id }, attrs));
    select.appendChild(el("option", { value: "", text: (element.placeholder || {}).text || "Choose…" }));
    const option = function (o) { return el("option", { value: o.value, text: (o.text || {}).text }); };
    (element.options || []).forEach(function (o) { select.appendChild(option(o)); });
    (element.option_groups || []).forEach(function (group) {
      select.appendChild(el("optgroup", { label: (group.label || {}).text || "" }, (group.options || []).map(option)));
    });
    return select;
  }

  // An input block (in a modal): its label, its control, a hint, and the error the app answered
  // the last submission with, under it as Slack shows it. What is chosen is kept in S.inputs, so
  // a redraw of the modal (an error arriving) does not lose it; it is sent on submit.
  function renderInput(block, where) {
    const element = block.element || {};
    const id = "input-" + block.block_id + "-" + element.action_id;
    const error = ((S.state && S.state.modal && S.state.modal.errors) || {})[block.block_id];
    const chosen = (S.inputs[block.block_id] || {})[element.action_id];
    const attrs = { id: id, "data-block-id": block.block_id, "aria-invalid": error ? "true" : null,
      "aria-describedby": error ? id + "-error" : null };
    let control;
    if (element.type === "static_select") {
      control = selectFor(element, attrs);
      const initial = (element.initial_option || {}).value;
      control.value = chosen !== undefined ? chosen : (initial || "");
    } else if (element.type === "plain_text_input") {
      control = el(element.multiline ? "textarea" : "input", Object.assign({ class: "b-text",
        "data-action-id": element.action_id, placeholder: (element.placeholder || {}).text }, attrs));
      control.value = chosen !== undefined ? chosen : (element.initial_value || "");
    } else if (element.type === "external_select") {
      // Its pick is kept (in data-value, which the submission sends), not sent as a click: an
      // input block's select sends nothing until the view is submitted, as in Slack.
      const shown = function (o) {
        found.input.dataset.value = o.value;
        found.input.value = o.text.text;
      };
      const found = typeahead(element, block, where, attrs, function (o) {
        S.inputs[block.block_id] = Object.assign(S.inputs[block.block_id] || {}, { [element.action_id]: o });
        shown(o);
      });
      const kept = chosen !== undefined ? chosen : element.initial_option;
      found.input.dataset.value = "";
      if (kept) shown(kept);
      control = found.box;
    } else {
      return el("div", { class: "b-input" }, [renderElement(element, block, where)]);
    }
    if (element.type !== "external_select") {
      const remember = function () {
        S.inputs[block.block_id] = Object.assign(S.inputs[block.block_id] || {}, { [element.action_id]: control.value });
      };
      control.addEventListener("change", remember);
      control.addEventListener("input", remember);
    }
    return el("div", { class: "b-input" + (error ? " has-error" : ""), "data-block-id": block.block_id }, [
      el("label", { class: "b-input-label", for: id, text: ((block.label || {}).text || "") +
        (block.optional ? " (optional)" : "") }),
      control,
      block.hint ? el("div", { class: "b-hint", text: block.hint.text }) : null,
      error ? el("div", { class: "b-error", id: id + "-error", role: "alert", text: error }) : null,
    ]);
  }

  // What the modal's input blocks hold: {block_id: {action_id: value}}, as view.state.values has it.
  function modalValues() {
    const values = {};
    document.querySelectorAll("#modal-body .b-input [data-action-id][data-block-id]").forEach(function (control) {
      const block = control.dataset.blockId;
      const value = control.dataset.value !== undefined ? control.dataset.value : control.value; // a type-ahead's pick
      values[block] = Object.assign(values[block] || {}, { [control.dataset.actionId]: value });
    });
    return values;
  }

  // -------------------------------------------------------------- the page

  // Redraw a part of the page only when what it shows changed, so focus, an open select or
  // what someone typed survive the polls and other people's clicks.
  function changed(part, data) {
    const json = JSON.stringify(data);
    if (S.drawn[part] === json) return false;
    S.drawn[part] = json;
    return true;
  }

  // Where the focus is, as keys that survive a redraw: the control in its message (or modal),
  // then the message, then the messages after it. A control a redraw took away (a label
  // answered with Enter) leaves the focus on its message's first control, or the next one's.
  const CONTROLS = "button, select, input, textarea, a[href]";
  function focusKey() {
    const active = document.activeElement;
    if (!active || active === document.body || !active.dataset) return null;
    const holder = active.closest("[data-ts], #modal-body, #home");
    if (!holder) return null;
    const scopeOf = function (node) {
      return node.dataset.ts ? "[data-ts='" + CSS.escape(node.dataset.ts) + "']" : "#" + node.id;
    };
    const scope = scopeOf(holder);
    const keys = [];
    if (active.dataset.actionId) keys.push(scope + " [data-action-id='" + CSS.escape(active.dataset.actionId) + "']");
    keys.push(scope);
    for (let next = holder.nextElementSibling; next; next = next.nextElementSibling) {
      if (next.dataset.ts) keys.push(scopeOf(next));
    }
    return keys;
  }

  function restoreFocus(keys) {
    if (!keys) return;
    const active = document.activeElement;
    if (active && active !== document.body && document.contains(active)) return;
    for (const key of keys) {
      const found = document.querySelector(key);
      const again = found && (found.matches(CONTROLS) ? found : found.querySelector(CONTROLS));
      if (again) { again.focus(); return; }
    }
  }

  // The messages of the place shown: each message's node is kept while it is unchanged; only
  // new, edited and removed messages touch the page.
  function drawMessages(box, messages, channelId) {
    const people = JSON.stringify(names());
    if (S.msgNames !== people || S.msgPlace !== channelId) {
      S.msgCache = new Map();
      S.msgNames = people;
      S.msgPlace = channelId;
    }
    const next = new Map();
    const nodes = messages.map(function (m) {
      const json = JSON.stringify(m);
      const before = S.msgCache.get(m.ts);
      const node = before && before.json === json ? before.node : renderMessage(m, channelId);
      next.set(m.ts, { json: json, node: node });
      return node;
    });
    S.msgCache = next;
    const keep = new Set(nodes);
    Array.from(box.children).forEach(function (child) { if (!keep.has(child)) child.remove(); });
    let cursor = box.firstChild;
    nodes.forEach(function (node) {
      if (node === cursor) cursor = cursor.nextSibling;
      else box.insertBefore(node, cursor);
    });
  }

  function channel() {
    return (S.state.channels || []).find(function (c) { return c.id === S.place.id; });
  }

  function renderMessage(message, channelId) {
    const where = { channel: channelId, ts: message.ts };
    const body = [];
    if (message.blocks && message.blocks.length) body.push(renderBlocks(message.blocks, where));
    else if (message.text) body.push(mrkdwn(message.text));
    (message.files || []).forEach(function (file) {
      const src = "/sandbox/files/" + encodeURIComponent(file.id);
      body.push(/\.png$/i.test(file.name || "")
        ? el("figure", { class: "file" }, [el("img", { src: src, alt: file.title || file.name }),
          el("figcaption", { text: file.title || file.name })])
        : el("a", { href: src, text: file.title || file.name }));
    });
    const head = el("div", { class: "meta" }, [
      el("span", { class: "author", text: "hitl" }), el("span", { class: "tag", text: "APP" }),
      message.ephemeral ? el("span", { class: "only-you", text: "Only visible to you" }) : null,
      message.edited ? el("span", { class: "edited", text: " (edited)" }) : null,
    ]);
    return el("article", { class: "message" + (message.ephemeral ? " ephemeral" : ""), "data-ts": message.ts }, [
      el("div", { class: "avatar", text: "h" }), el("div", { class: "content" }, [head].concat(body)),
    ]);
  }

  function render() {
    const state = S.state;
    $("team").textContent = state.team.name;
    const switcher = $("user-switcher");
    if (switcher.options.length !== state.users.length) {
      switcher.replaceChildren(...state.users.map(function (u) {
        return el("option", { value: u.id, text: u.real_name + " (@" + u.name + ")" });
      }));
    }
    switcher.value = S.user;
    if (!S.place.id && S.place.kind === "channel") S.place.id = state.channels[0].id;
    const focus = focusKey();
    const channels = state.channels.map(function (c) { return [c.id, c.name]; });
    if (changed("channels", [channels, S.place])) {
      $("channel-list").replaceChildren(...state.channels.map(function (c) {
        const active = S.place.kind === "channel" && S.place.id === c.id;
        return el("button", { class: "nav-item" + (active ? " active" : ""), type: "button",
          "data-channel": c.id, text: "# " + c.name, onclick: function () { go("channel", c.id); } });
      }));
    }
    const inApp = S.place.kind === "home" || S.place.kind === "dm";
    const home = S.place.kind === "home";
    const dm = state.dm || { id: null, messages: [] };
    if (S.seen.instance !== state.instance) S.seen = { instance: state.instance, users: {} };
    const seen = S.seen.users;
    if (S.place.kind === "dm" && seen[S.user] !== dm.messages.length) {
      seen[S.user] = dm.messages.length;
      localStorage.setItem("hitl.seen", JSON.stringify(S.seen));
    }
    const unread = dm.messages.length - (seen[S.user] || 0);
    $("dm-unread").hidden = unread <= 0;
    $("dm-unread").textContent = unread > 0 ? String(unread) : "";
    $("dm-unread").title = count(Math.max(unread, 0), "new message");
    $("open-home").classList.toggle("active", inApp);
    $("app-tabs").hidden = !inApp;
    $("tab-home").classList.toggle("active", home);
    $("tab-messages").classList.toggle("active", S.place.kind === "dm");
    $("home").hidden = !home;
    $("messages").hidden = home;
    $("composer-form").hidden = home; // slash commands are typed in a channel or the app's DM
    if (home) {
      $("main-title").textContent = "hitl";
      $("main-subtitle").textContent = "";
      if (changed("home", [state.home, names()])) {
        $("home").replaceChildren(state.home ? renderBlocks(state.home.blocks, { view_id: state.home.id })
          : el("p", { text: "Opening the app's Home…" }));
      }
    } else {
      const current = S.place.kind === "dm" ? { id: dm.id, name: "hitl", messages: dm.messages } : channel();
      $("main-title").textContent = S.place.kind === "dm" ? "hitl" : "# " + current.name;
      $("main-subtitle").textContent = count(current.messages.length, "message");
      const box = $("messages");
      const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
      S.drawn.home = null; // drawn afresh when the person comes back to it
      drawMessages(box, current.messages, current.id);
      if (atBottom || S.justMoved) box.scrollTop = box.scrollHeight;
      $("composer").placeholder = S.place.kind === "dm" ? "Message hitl — try /hitl accuracy"
        : "Message #" + current.name + " — try /hitl stats";
    }
    S.justMoved = false;
    renderModal(state.modal);
    restoreFocus(focus);
  }

  function focusables() {
    return Array.from($("modal").querySelectorAll("button, select, input, textarea, a[href]"))
      .filter(function (node) { return !node.disabled && !node.hidden && node.offsetParent !== null; });
  }

  // The modal (Slack's window): drawn again only when its view or the app's errors change. When
  // it opens, the focus moves into it (it is aria-modal); when it closes, back where it was.
  function renderModal(view) {
    const backdrop = $("modal-backdrop");
    if (!changed("modal", view)) return;
    if (!view) {
      if (!backdrop.hidden) {
        backdrop.hidden = true;
        const back = S.returnFocus;
        S.returnFocus = null;
        (back && document.contains(back) ? back : $("composer")).focus();
      }
      return;
    }
    const opening = backdrop.hidden;
    if (opening) S.returnFocus = document.activeElement;
    const form = view.id + "@" + (view.hash || "");
    if (S.inputsFor !== form) { S.inputs = {}; S.inputsFor = form; } // a new view: a fresh form
    backdrop.hidden = false;
    backdrop.dataset.viewId = view.id;
    $("modal-title").textContent = (view.title || {}).text || "";
    // A click or submit carries the view's hash: one drawn before the view moved on (another
    // tab answered its item) is refused, not stored as the answer to the item after it.
    backdrop.dataset.viewHash = view.hash || "";
    $("modal-body").replaceChildren(renderBlocks(view.blocks, { view_id: view.id, hash: view.hash }));
    $("modal-close").textContent = (view.close || {}).text || "Cancel";
    $("modal-submit").hidden = !view.submit;
    $("modal-submit").textContent = (view.submit || {}).text || "Submit";
    const error = $("modal-body").querySelector(".has-error [data-action-id]");
    if (error) error.focus();
    else if (opening || !$("modal").contains(document.activeElement)) {
      const first = $("modal-body").querySelector("select, input, textarea") || focusables()
        .find(function (node) { return $("modal-body").contains(node); }) || $("modal-close");
      first.focus();
    }
  }

  function closeModal() {
    post("/sandbox/view/close", { view_id: $("modal-backdrop").dataset.viewId });
  }

  async function submitModal() {
    const button = $("modal-submit");
    if (button.disabled || button.hidden) return;
    button.disabled = true;
    try {
      const data = await post("/sandbox/view/submit", {
        view_id: $("modal-backdrop").dataset.viewId, hash: $("modal-backdrop").dataset.viewHash || null,
        values: modalValues() });
      const body = data.body || {};
      const modal = S.state && S.state.modal;
      if (body.response_action === "errors" && modal && modal.id === $("modal-backdrop").dataset.viewId) {
        modal.errors = body.errors || {}; // shown now; the next state says the same
        renderModal(modal);
      }
    } finally {
      button.disabled = false;
    }
  }

  function go(kind, id) {
    S.place = { kind: kind, id: id || null };
    S.justMoved = true;
    if (kind === "home") post("/sandbox/home", {});
    if (S.state) render();
  }

  async function refresh(since) {
    const url = "/sandbox/state?user=" + encodeURIComponent(S.user || "") +
      (since === undefined ? "" : "&since=" + since);
    const controller = new AbortController();
    S.poll = controller;
    let response;
    try {
      response = await fetch(url, { signal: controller.signal });
    } catch (error) {
      if (error.name !== "AbortError") stopped(); // no answer: the demo stopped
      throw error;
    }
    const state = await response.json();
    reachable();
    if (S.poll !== controller) return; // the person switched users meanwhile
    if (!S.user) S.user = state.me;
    S.state = state;
    render();
  }

  async function pollForever() {
    for (;;) {
      try {
        // After the demo stopped, ask without `since`: a demo started again counts its
        // changes afresh, and a long poll from a count it happens to stand at would wait.
        await refresh(S.state && !S.stopped ? S.state.version : undefined);
      } catch (error) {
        if (error.name === "AbortError") continue;
        console.error(error); // seen in the browser's console, not swallowed
        await new Promise(function (r) { setTimeout(r, 1000); });
      }
    }
  }

  $("user-switcher").addEventListener("change", function (event) {
    S.user = event.target.value;
    localStorage.setItem("hitl.user", S.user);
    const address = new URL(location.href); // a reload stays this person (?user= wins)
    address.searchParams.set("user", S.user);
    history.replaceState(null, "", address);
    if (S.poll) S.poll.abort();
    S.state = null;
    S.drawn = {}; // another person: everything is drawn afresh
    S.msgCache = new Map();
    if (S.place.kind === "home") post("/sandbox/home", {});
  });
  $("open-home").addEventListener("click", function () { go("home"); });
  $("tab-home").addEventListener("click", function () { go("home"); });
  $("tab-messages").addEventListener("click", function () { go("dm"); });
  $("modal-close").addEventListener("click", closeModal);
  $("modal-x").addEventListener("click", closeModal);
  $("modal-submit").addEventListener("click", submitModal);
  // Escape closes the modal as in Slack; Tab stays inside it (it is aria-modal).
  document.addEventListener("keydown", function (event) {
    if ($("modal-backdrop").hidden) return;
    if (event.key === "Escape") {
      event.preventDefault();
      closeModal();
    } else if (event.key === "Tab") {
      const all = focusables();
      if (!all.length) return;
      const first = all[0], last = all[all.length - 1];
      const inside = $("modal").contains(document.activeElement);
      if (event.shiftKey && (document.activeElement === first || !inside)) { event.preventDefault(); last.focus(); }
      else if (!event.shiftKey && (document.activeElement === last || !inside)) { event.preventDefault(); first.focus(); }
    }
  });
  $("composer-form").addEventListener("submit", async function (event) {
    event.preventDefault();
    const where = S.place.kind === "dm" ? S.state && S.state.dm.id : S.place.kind === "channel" && S.place.id;
    if (!where) return; // commands are sent in a channel or the app's DM, never from App Home
    const input = $("composer");
    const typed = input.value;
    const text = typed.trim();
    if (!text) return;
    if (!text.startsWith("/")) { // said here: the sandbox's 400 would be a red line in the console
      toast("The sandbox only sends slash commands: try /hitl help");
      return; // kept in the box, to fix and send again
    }
    input.value = "";
    const data = await post("/sandbox/command", { channel: where, text: text });
    if (data.error && !input.value) input.value = typed; // keep it to fix and send again
  });

  window.hitlSandbox = { mrkdwn: md.render, state: function () { return S.state; } };
  pollForever();
})();
