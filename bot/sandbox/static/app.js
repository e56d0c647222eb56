// The sandbox page: draws what one person sees (from GET /sandbox/state, long-polled) and sends
// what they do to POST /sandbox/*; the server turns it into signed Slack requests to the bot.
(function () {
  "use strict";
  const md = window.hitlMrkdwn;
  const $ = function (id) { return document.getElementById(id); };
  const S = {
    user: new URLSearchParams(location.search).get("user") || localStorage.getItem("hitl.user"),
    place: { kind: "channel", id: null }, // kind: channel, home (the app's Home) or dm (its Messages)
    seen: {}, // user -> how many of their direct messages with the app they have looked at
    state: null,
    poll: null,
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

  async function post(path, body) {
    const response = await fetch(path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(Object.assign({ user: S.user }, body)),
    });
    const data = await response.json();
    if (!response.ok) toast(data.error || "The sandbox could not do that");
    else if (data.status && data.status !== 200) toast("The app answered HTTP " + data.status);
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
      button.addEventListener("click", async function () {
        button.disabled = true;
        try { await act(element, block, where); } finally { button.disabled = false; }
      });
      return button;
    }
    if (element.type === "static_select") {
      const select = el("select", { class: "b-select", "data-action-id": element.action_id,
        "aria-label": (element.placeholder || {}).text || "Choose" });
      select.appendChild(el("option", { value: "", text: (element.placeholder || {}).text || "Choose…" }));
      const options = (element.options || []).concat(
        ...(element.option_groups || []).map(function (g) { return g.options || []; }));
      options.forEach(function (o) { select.appendChild(el("option", { value: o.value, text: o.text.text })); });
      select.addEventListener("change", function () {
        if (select.value) act(element, block, where, select.value);
      });
      return select;
    }
    if (element.type === "external_select") {
      const list = el("div", { class: "ext-options", hidden: "" });
      const input = el("input", { type: "text", placeholder: (element.placeholder || {}).text || "Search…",
        "data-action-id": element.action_id });
      async function suggest() {
        const data = await post("/sandbox/options", Object.assign({
          action_id: element.action_id, block_id: block.block_id, value: input.value,
        }, where));
        list.replaceChildren(...(data.options || []).map(function (o) {
          return el("button", { type: "button", text: o.text.text, onclick: function () {
            list.hidden = true; act(element, block, where, o.value);
          } });
        }));
        list.hidden = false;
      }
      input.addEventListener("focus", suggest);
      input.addEventListener("input", suggest);
      return el("div", { class: "ext-select" }, [input, list]);
    }
    if (element.type === "image") return el("img", { src: element.image_url, alt: element.alt_text, width: "64" });
    return el("span", { class: "unsupported", text: "[" + element.type + "]" });
  }

  // -------------------------------------------------------------- the page

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
    $("channel-list").replaceChildren(...state.channels.map(function (c) {
      const active = S.place.kind === "channel" && S.place.id === c.id;
      return el("button", { class: "nav-item" + (active ? " active" : ""), type: "button",
        "data-channel": c.id, text: "# " + c.name, onclick: function () { go("channel", c.id); } });
    }));
    const inApp = S.place.kind === "home" || S.place.kind === "dm";
    const home = S.place.kind === "home";
    const dm = state.dm || { id: null, messages: [] };
    if (S.place.kind === "dm") S.seen[S.user] = dm.messages.length;
    const unread = dm.messages.length - (S.seen[S.user] || 0);
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
      $("home").replaceChildren(state.home ? renderBlocks(state.home.blocks, { view_id: state.home.id })
        : el("p", { text: "Opening the app's Home…" }));
    } else {
      const current = S.place.kind === "dm" ? { id: dm.id, name: "hitl", messages: dm.messages } : channel();
      $("main-title").textContent = S.place.kind === "dm" ? "hitl" : "# " + current.name;
      $("main-subtitle").textContent = count(current.messages.length, "message");
      const box = $("messages");
      const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
      box.replaceChildren(...current.messages.map(function (m) { return renderMessage(m, current.id); }));
      if (atBottom || S.justMoved) box.scrollTop = box.scrollHeight;
      $("composer").placeholder = S.place.kind === "dm" ? "Message hitl — try /hitl accuracy"
        : "Message #" + current.name + " — try /hitl stats";
    }
    S.justMoved = false;
    renderModal(state.modal);
  }

  function renderModal(view) {
    const backdrop = $("modal-backdrop");
    if (!view) { backdrop.hidden = true; return; }
    backdrop.hidden = false;
    backdrop.dataset.viewId = view.id;
    $("modal-title").textContent = (view.title || {}).text || "";
    $("modal-body").replaceChildren(renderBlocks(view.blocks, { view_id: view.id }));
    $("modal-close").textContent = (view.close || {}).text || "Cancel";
    $("modal-submit").hidden = !view.submit;
    $("modal-submit").textContent = (view.submit || {}).text || "Submit";
  }

  function closeModal() {
    post("/sandbox/view/close", { view_id: $("modal-backdrop").dataset.viewId });
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
    const response = await fetch(url, { signal: controller.signal });
    const state = await response.json();
    if (S.poll !== controller) return; // the person switched users meanwhile
    if (!S.user) S.user = state.me;
    S.state = state;
    render();
  }

  async function pollForever() {
    for (;;) {
      try {
        await refresh(S.state ? S.state.version : undefined);
      } catch (error) {
        if (error.name !== "AbortError") await new Promise(function (r) { setTimeout(r, 1000); });
      }
    }
  }

  $("user-switcher").addEventListener("change", function (event) {
    S.user = event.target.value;
    localStorage.setItem("hitl.user", S.user);
    if (S.poll) S.poll.abort();
    S.state = null;
    if (S.place.kind === "home") post("/sandbox/home", {});
  });
  $("open-home").addEventListener("click", function () { go("home"); });
  $("tab-home").addEventListener("click", function () { go("home"); });
  $("tab-messages").addEventListener("click", function () { go("dm"); });
  $("modal-close").addEventListener("click", closeModal);
  $("modal-x").addEventListener("click", closeModal);
  $("modal-submit").addEventListener("click", function () {
    post("/sandbox/view/submit", { view_id: $("modal-backdrop").dataset.viewId });
  });
  $("composer-form").addEventListener("submit", async function (event) {
    event.preventDefault();
    const where = S.place.kind === "dm" ? S.state && S.state.dm.id : S.place.kind === "channel" && S.place.id;
    if (!where) return; // commands are sent in a channel or the app's DM, never from App Home
    const input = $("composer");
    const typed = input.value;
    const text = typed.trim();
    if (!text) return;
    input.value = "";
    const data = await post("/sandbox/command", { channel: where, text: text });
    if (data.error && !input.value) input.value = typed; // keep it to fix and send again
  });

  window.hitlSandbox = { mrkdwn: md.render, state: function () { return S.state; } };
  pollForever();
})();
