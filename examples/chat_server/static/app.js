// rediskit chat: the browser side of examples/chat_server (protocol: ../PROTOCOL.md).
// Plain script, no build step. Every piece of user data reaches the DOM through textContent,
// a Text node or setAttribute: never through innerHTML.
'use strict';

(function () {
  const KEY_TOKEN = 'rediskit-chat.token';
  const KEY_NAME = 'rediskit-chat.name';
  const KEY_ROOM = 'rediskit-chat.room';
  const HISTORY_PAGE = 20;
  const TYPING_SEND_EVERY_MS = 2000;
  const TYPING_SHOW_MS = 3000;
  const SEARCH_DEBOUNCE_MS = 150;
  const RECONNECT_FIRST_MS = 300;
  const RECONNECT_MAX_MS = 10000;
  const ROOM_ID = /^[a-z0-9_-]{1,32}$/;

  const $ = (id) => document.getElementById(id);
  const ui = {
    status: $('status'), error: $('error'),
    login: $('login'), loginName: $('login-name'), loginBtn: $('login-btn'),
    meBox: $('me-box'), me: $('me'), meAvatar: $('me-avatar'), logoutBtn: $('logout-btn'),
    onlineList: $('online-list'), onlineCount: $('online-count'),
    roomsMine: $('rooms-mine'), roomsAll: $('rooms-all'),
    roomNew: $('room-new'), roomNewId: $('room-new-id'), roomNewName: $('room-new-name'),
    roomCreateBtn: $('room-create-btn'),
    roomTitle: $('room-title'), roomId: $('room-id'), leaveBtn: $('leave-btn'),
    scroller: $('scroller'), loadOlder: $('load-older'), messages: $('messages'),
    placeholder: $('placeholder'), typing: $('typing'),
    composerForm: $('composer-form'), composer: $('composer'), sendBtn: $('send-btn'),
    members: $('members'), membersCount: $('members-count'),
    search: $('search'), searchResults: $('search-results'),
    notifCount: $('notif-count'), notifReadBtn: $('notif-read-btn'), notifications: $('notifications'),
  };

  // ---------------------------------------------------------------- storage

  function load(key) {
    try { return sessionStorage.getItem(key); } catch (_) { return null; }
  }
  function save(key, value) {
    try {
      if (value == null || value === '') sessionStorage.removeItem(key);
      else sessionStorage.setItem(key, String(value));
    } catch (_) { /* storage disabled: the session just does not survive a reload */ }
  }

  // ---------------------------------------------------------------- state

  const st = {
    me: null,                         // {id, name}
    token: load(KEY_TOKEN),
    name: load(KEY_NAME),
    ttl: 60000,
    online: new Map(),                // user id -> name
    rooms: new Map(),                 // room id -> {id, name, joined, unread}
    open: null,                       // {id, msgs: [], ids: Set, more, members: Map id -> {id,name,online}}
    opening: null,                    // room id of an `open` in flight
    openingBuffer: [],                // `message`s for that room that came before `opened`
    wantRoom: load(KEY_ROOM),         // the room to reopen after a reload / reconnect
    notifs: [],
    notifUnread: 0,
    typers: new Map(),                // name -> timer
    lastTypingSent: 0,
    searchQ: '',
    searchTimer: null,
    historyPending: false,
  };

  // Requests carry `req`; the server's direct answer (or error) carries it back.
  let reqSeq = 0;
  const reqs = new Map();             // req -> {op, ...}

  // ---------------------------------------------------------------- DOM helpers

  // el('li', {class: 'x', 'data-user': name, text: name}, child...) — strings become Text nodes.
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    if (props) {
      for (const [k, v] of Object.entries(props)) {
        if (v == null || v === false) continue;
        if (k === 'class') node.className = v;
        else if (k === 'text') node.textContent = String(v);
        else if (k.startsWith('on') && typeof v === 'function') node.addEventListener(k.slice(2), v);
        else node.setAttribute(k, v === true ? '' : String(v));
      }
    }
    for (const c of children) if (c != null && c !== false) node.append(c);
    return node;
  }

  // Keyed update of a list: `items` in display order; `key(item)` is the value of `attr` on the
  // item's <li>. Existing nodes are updated and moved, not recreated (keeps focus and hover).
  function reconcile(ul, attr, items, key, create, update) {
    const existing = new Map();
    for (const li of Array.from(ul.children)) existing.set(li.getAttribute(attr), li);
    let prev = null;
    for (const item of items) {
      const k = String(key(item));
      let li = existing.get(k);
      if (li) existing.delete(k);
      else { li = create(item); li.setAttribute(attr, k); }
      update(li, item);
      const want = prev ? prev.nextSibling : ul.firstChild;
      if (want !== li) ul.insertBefore(li, want);
      prev = li;
    }
    for (const li of existing.values()) li.remove();
  }

  function setHidden(node, hidden) {
    if (hidden) node.setAttribute('hidden', '');
    else node.removeAttribute('hidden');
  }

  function initials(name) {
    const parts = String(name || '?').trim().split(/\s+/).filter(Boolean);
    const first = (s) => Array.from(s)[0] || '';
    return ((parts.length > 1 ? first(parts[0]) + first(parts[parts.length - 1]) : first(parts[0] || '?'))).toUpperCase();
  }

  function hue(name) {
    let h = 0;
    for (const ch of String(name)) h = (h * 31 + ch.codePointAt(0)) >>> 0;
    return h % 360;
  }

  function avatar(name) {
    const a = el('span', { class: 'avatar', 'aria-hidden': 'true', text: initials(name) });
    a.style.setProperty('--h', String(hue(name)));
    return a;
  }

  function byName(a, b) {
    return String(a.name).localeCompare(String(b.name), undefined, { sensitivity: 'base' });
  }

  function fmtTime(ts) {
    const d = new Date(Number(ts));
    if (Number.isNaN(d.getTime())) return '';
    const now = new Date();
    const sameDay = d.toDateString() === now.toDateString();
    return sameDay
      ? d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })
      : d.toLocaleDateString([], { month: 'short', day: 'numeric' }) + ' ' +
        d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  }

  function nameOf(x) {
    if (x == null) return '';
    if (typeof x === 'object') return x.name != null ? String(x.name) : String(x.id ?? '');
    return String(x);
  }

  // ---------------------------------------------------------------- status and errors

  function setStatus(s) {
    ui.status.textContent = s;
    ui.status.className = 'status ' + (s === 'connected' ? 'connected' : s === 'offline' ? 'offline' : 'reconnecting');
    document.body.classList.toggle('reconnecting', s !== 'connected' && s !== 'offline');
  }

  function showError(message, code) {
    ui.error.textContent = message;
    if (code) ui.error.setAttribute('data-code', code);
    else ui.error.removeAttribute('data-code');
    setHidden(ui.error, false);
  }

  function clearError() {
    ui.error.textContent = '';
    ui.error.removeAttribute('data-code');
    setHidden(ui.error, true);
  }

  // ---------------------------------------------------------------- connection

  let ws = null;
  let wanted = false;                 // the user wants to be logged in (reconnect when dropped)
  let loggedIn = false;
  let attempt = 0;
  let reconnectTimer = null;
  let pingTimer = null;
  let lastHeard = 0;

  function wsUrl() {
    return (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws';
  }

  function send(obj, info) {
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    const req = ++reqSeq;
    reqs.set(req, Object.assign({ op: obj.op }, info || {}));
    if (reqs.size > 500) reqs.delete(reqs.keys().next().value);
    ws.send(JSON.stringify(Object.assign({}, obj, { req })));
    return true;
  }

  function connect() {
    clearTimeout(reconnectTimer);
    reconnectTimer = null;
    if (ws) dropSocket(ws);
    let sock;
    try {
      sock = new WebSocket(wsUrl());
    } catch (e) {
      ws = null;
      onDrop();
      return;
    }
    ws = sock;
    sock.onopen = () => { if (ws === sock) { lastHeard = Date.now(); sendLogin(); } };
    sock.onmessage = (e) => {
      if (ws !== sock) return;
      lastHeard = Date.now();
      let m;
      try { m = JSON.parse(e.data); } catch (_) { return; }
      if (m && typeof m === 'object') handle(m);
    };
    sock.onclose = () => { if (ws === sock) { ws = null; onDrop(); } };
    sock.onerror = () => { /* a close event follows */ };
  }

  function dropSocket(sock) {
    sock.onopen = sock.onmessage = sock.onclose = sock.onerror = null;
    try { sock.close(); } catch (_) { /* already closed */ }
  }

  function sendLogin() {
    if (st.token) send({ op: 'login', token: st.token }, { by: 'token' });
    else if (st.name) send({ op: 'login', name: st.name }, { by: 'name' });
    else { wanted = false; if (ws) { dropSocket(ws); ws = null; } setStatus('offline'); showLoginForm(); }
  }

  function onDrop() {
    stopPing();
    loggedIn = false;
    reqs.clear();                     // their answers will not come
    st.opening = null;
    st.historyPending = false;
    updateLoadOlder();
    ui.loginBtn.disabled = false;
    if (!wanted) { setStatus('offline'); return; }
    setStatus('reconnecting…');
    const base = Math.min(RECONNECT_MAX_MS, RECONNECT_FIRST_MS * 2 ** Math.min(attempt, 10));
    attempt++;
    clearTimeout(reconnectTimer);
    reconnectTimer = setTimeout(connect, Math.round(base * (0.75 + Math.random() * 0.5)));
  }

  function startPing() {
    stopPing();
    const every = Math.max(1000, Math.min(20000, Math.floor(st.ttl / 3)));
    pingTimer = setInterval(() => {
      if (!ws) return;
      // Nothing heard for a long while: the socket is dead without a close; start over.
      if (Date.now() - lastHeard > 3 * every + 5000) {
        const s = ws;
        ws = null;
        dropSocket(s);
        onDrop();
        return;
      }
      send({ op: 'ping' });
    }, every);
  }

  function stopPing() {
    clearInterval(pingTimer);
    pingTimer = null;
  }

  function reconnectNow() {
    if (wanted && !ws) { attempt = 0; connect(); }
  }

  window.addEventListener('online', reconnectNow);
  document.addEventListener('visibilitychange', () => { if (!document.hidden) reconnectNow(); });

  // ---------------------------------------------------------------- login / logout

  function showLoginForm() {
    setHidden(ui.login, false);
    setHidden(ui.meBox, true);
    document.body.classList.add('logged-out');
    ui.loginBtn.disabled = false;
    if (st.name && !ui.loginName.value) ui.loginName.value = st.name;
  }

  function doLogin(name) {
    name = name.trim();
    if (!name) { showError('Type a name first.'); ui.loginName.focus(); return; }
    if (Array.from(name).length > 40) { showError('A name has at most 40 characters.'); return; }
    clearError();
    if (st.name !== name) { st.token = null; save(KEY_TOKEN, null); }
    st.name = name;
    save(KEY_NAME, name);
    wanted = true;
    attempt = 0;
    ui.loginBtn.disabled = true;
    if (ws && ws.readyState === WebSocket.OPEN) sendLogin();
    else connect();
  }

  function resetSession() {
    st.me = null;
    st.online.clear();
    st.rooms.clear();
    st.notifs = [];
    st.notifUnread = 0;
    closeRoomView();
    renderOnline();
    renderRooms();
    renderNotifs();
    ui.searchResults.replaceChildren();
    ui.search.value = '';
    st.searchQ = '';
  }

  ui.login.addEventListener('submit', (e) => { e.preventDefault(); doLogin(ui.loginName.value); });
  ui.logoutBtn.addEventListener('click', () => {
    wanted = false;
    if (!send({ op: 'logout' })) onBye();
  });

  function onBye() {
    wanted = false;
    loggedIn = false;
    st.token = null;
    save(KEY_TOKEN, null);
    save(KEY_ROOM, null);
    st.wantRoom = null;
    stopPing();
    if (ws) { dropSocket(ws); ws = null; }
    resetSession();
    setStatus('offline');
    showLoginForm();
  }

  // ---------------------------------------------------------------- rooms

  function ensureRoom(id, joined) {
    let r = st.rooms.get(id);
    if (!r) { r = { id, name: id, joined: false, unread: 0 }; st.rooms.set(id, r); }
    if (joined) r.joined = true;
    return r;
  }

  function renderRooms() {
    const all = Array.from(st.rooms.values());
    const mine = all.filter((r) => r.joined).sort(byName);
    const others = all.filter((r) => !r.joined).sort(byName);
    const openId = st.open ? st.open.id : null;

    reconcile(ui.roomsMine, 'data-room', mine, (r) => r.id,
      (r) => {
        const li = el('li', { class: 'room', tabindex: '0', role: 'button' },
          el('span', { class: 'hash', 'aria-hidden': 'true', text: '#' }),
          el('span', { class: 'name' }),
          el('span', { class: 'badge', hidden: true }));
        li.addEventListener('click', () => openRoom(r.id));
        li.addEventListener('keydown', (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); openRoom(r.id); } });
        return li;
      },
      (li, r) => {
        li.querySelector('.name').textContent = r.name;
        li.title = r.name === r.id ? '#' + r.id : r.name + ' (#' + r.id + ')';
        li.classList.toggle('active', r.id === openId);
        li.classList.toggle('opening', r.id === st.opening && r.id !== openId);
        li.classList.toggle('unread', r.unread > 0);
        const badge = li.querySelector('.badge');
        const text = r.unread > 0 ? String(r.unread) : '';
        if (badge.textContent !== text) badge.textContent = text;
        if (r.unread > 0) badge.removeAttribute('hidden');
        else if (!badge.hasAttribute('hidden')) badge.setAttribute('hidden', '');
      });

    reconcile(ui.roomsAll, 'data-room', others, (r) => r.id,
      (r) => {
        const btn = el('button', { type: 'button', class: 'join small', text: 'Join' });
        btn.addEventListener('click', () => {
          if (send({ op: 'join', room: r.id }, { room: r.id })) btn.disabled = true;
        });
        return el('li', { class: 'room' },
          el('span', { class: 'hash', 'aria-hidden': 'true', text: '#' }),
          el('span', { class: 'name' }),
          btn);
      },
      (li, r) => {
        li.querySelector('.name').textContent = r.name;
        li.title = r.name === r.id ? '#' + r.id : r.name + ' (#' + r.id + ')';
        if (!reqPendingFor('join', r.id)) li.querySelector('button.join').disabled = !loggedIn;
      });

    let total = 0;
    for (const r of mine) total += r.unread;
    document.title = (total > 0 ? '(' + total + ') ' : '') + 'rediskit chat';
  }

  function reqPendingFor(op, room) {
    for (const info of reqs.values()) if (info.op === op && info.room === room && !info.done) return true;
    return false;
  }

  // force: send `open` even when the room is the open one (after a reconnect, to catch up).
  function openRoom(id, force) {
    if (!loggedIn) return;
    if (!force && st.open && st.open.id === id && !st.opening) { ui.composer.focus(); return; }
    if (st.opening === id) return;
    st.opening = id;
    st.openingBuffer = [];
    send({ op: 'open', room: id }, { room: id });
    renderRooms();
  }

  function closeRoomView() {
    st.open = null;
    st.opening = null;
    st.openingBuffer = [];
    clearTypers();
    ui.messages.replaceChildren();
    ui.members.replaceChildren();
    ui.membersCount.textContent = '';
    ui.roomTitle.textContent = 'No room open';
    ui.roomId.textContent = '';
    setHidden(ui.leaveBtn, true);
    setHidden(ui.loadOlder, true);
    setHidden(ui.placeholder, false);
    ui.placeholder.textContent = st.me ? 'Open a room on the left, or create one.' : 'Log in, then open a room on the left.';
    ui.composer.disabled = true;
    ui.sendBtn.disabled = true;
  }

  function roomLeft(id) {
    const r = st.rooms.get(id);
    if (r) { r.joined = false; r.unread = 0; }
    if (st.open && st.open.id === id) { closeRoomView(); save(KEY_ROOM, null); st.wantRoom = null; }
    if (st.opening === id) st.opening = null;
    renderRooms();
  }

  ui.roomNew.addEventListener('submit', (e) => {
    e.preventDefault();
    const id = ui.roomNewId.value.trim();
    const name = ui.roomNewName.value.trim();
    if (!ROOM_ID.test(id)) {
      showError('A room id is 1 to 32 characters of a-z, 0-9, _ and -.');
      ui.roomNewId.focus();
      return;
    }
    const msg = { op: 'create_room', room: id };
    if (name) msg.name = name;
    if (send(msg, { room: id })) { ui.roomNewId.value = ''; ui.roomNewName.value = ''; }
  });

  ui.leaveBtn.addEventListener('click', () => {
    if (st.open) send({ op: 'leave', room: st.open.id }, { room: st.open.id });
  });

  // ---------------------------------------------------------------- messages

  // Message ids: numbers, Redis stream ids ("ms-seq") or opaque strings. ts orders, id breaks ties.
  function cmpDigits(a, b) {
    a = a.replace(/^0+(?=\d)/, '');
    b = b.replace(/^0+(?=\d)/, '');
    return a.length - b.length || (a < b ? -1 : a > b ? 1 : 0);
  }
  function cmpId(a, b) {
    a = String(a); b = String(b);
    const ra = /^(\d+)(?:-(\d+))?$/.exec(a);
    const rb = /^(\d+)(?:-(\d+))?$/.exec(b);
    if (ra && rb) return cmpDigits(ra[1], rb[1]) || cmpDigits(ra[2] || '0', rb[2] || '0');
    return a < b ? -1 : a > b ? 1 : 0;
  }
  function cmpMsg(a, b) {
    return (Number(a.ts) - Number(b.ts)) || cmpId(a.id, b.id);
  }

  // The text, with @mentions marked. Only Text nodes and element wrappers: no HTML parsing.
  function renderText(text) {
    const node = el('div', { class: 'text' });
    const myName = st.me ? String(st.me.name).toLowerCase() : null;
    const re = /@([\p{L}\p{N}_.-]+)/gu;
    let last = 0;
    let m;
    while ((m = re.exec(text)) !== null) {
      if (m.index > last) node.append(text.slice(last, m.index));
      const isMe = myName !== null && m[1].toLowerCase() === myName;
      node.append(el('span', { class: isMe ? 'mention me' : 'mention', text: m[0] }));
      last = m.index + m[0].length;
    }
    if (last < text.length) node.append(text.slice(last));
    return node;
  }

  function messageNode(msg) {
    const from = nameOf(msg.from);
    const mine = st.me && msg.from && String(msg.from.id) === String(st.me.id);
    const li = el('li', { class: mine ? 'msg mine' : 'msg', 'data-id': String(msg.id) },
      avatar(from),
      el('div', { class: 'body' },
        el('div', { class: 'meta' },
          el('span', { class: 'from', text: from }),
          el('time', { class: 'time', datetime: new Date(Number(msg.ts)).toISOString(), title: new Date(Number(msg.ts)).toLocaleString(), text: fmtTime(msg.ts) })),
        renderText(String(msg.text ?? ''))));
    return li;
  }

  function isValidMsg(msg) {
    return msg && msg.id != null && msg.ts != null && Number.isFinite(Number(msg.ts));
  }

  // mode: 'live' (new ones, keep the view at the bottom when it was there), 'older' (keep the
  // view where it is), 'initial' (scroll to the bottom).
  function addMessages(list, mode) {
    const o = st.open;
    if (!o || !Array.isArray(list) || list.length === 0) return 0;
    const sc = ui.scroller;
    const atBottom = sc.scrollHeight - sc.scrollTop - sc.clientHeight < 40;
    const fromBottom = sc.scrollHeight - sc.scrollTop;
    let added = 0;
    let mineAdded = false;
    for (const msg of list) {
      if (!isValidMsg(msg)) continue;
      const id = String(msg.id);
      if (o.ids.has(id)) continue;
      // Binary search for the insert position (messages mostly arrive at either end).
      let lo = 0, hi = o.msgs.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (cmpMsg(o.msgs[mid], msg) <= 0) lo = mid + 1; else hi = mid;
      }
      o.msgs.splice(lo, 0, msg);
      o.ids.add(id);
      ui.messages.insertBefore(messageNode(msg), ui.messages.children[lo] || null);
      added++;
      if (st.me && msg.from && String(msg.from.id) === String(st.me.id)) mineAdded = true;
    }
    if (added) {
      regroup();
      setHidden(ui.placeholder, true);
      if (mode === 'older') sc.scrollTop = sc.scrollHeight - fromBottom;
      else if (mode === 'initial' || atBottom || mineAdded) sc.scrollTop = sc.scrollHeight;
    }
    return added;
  }

  // A message right after one of the same sender (within 5 minutes) is shown without its
  // avatar and header line (class "cont"); its .from stays in the DOM.
  function regroup() {
    const o = st.open;
    if (!o) return;
    const items = ui.messages.children;
    for (let i = 0; i < o.msgs.length && i < items.length; i++) {
      const prev = o.msgs[i - 1];
      const cur = o.msgs[i];
      const cont = !!prev && !!prev.from && !!cur.from && String(prev.from.id) === String(cur.from.id) &&
        Number(cur.ts) - Number(prev.ts) < 5 * 60 * 1000;
      items[i].classList.toggle('cont', cont);
    }
  }

  function updateLoadOlder() {
    const show = !!(st.open && st.open.more);
    setHidden(ui.loadOlder, !show);
    ui.loadOlder.disabled = st.historyPending;
  }

  ui.loadOlder.addEventListener('click', () => {
    const o = st.open;
    if (!o || !o.more || st.historyPending) return;
    const oldest = o.msgs[0];
    const msg = { op: 'history', room: o.id, limit: HISTORY_PAGE };
    if (oldest) msg.before = { ts: oldest.ts, id: oldest.id };
    if (send(msg, { room: o.id })) { st.historyPending = true; updateLoadOlder(); }
  });

  // ---------------------------------------------------------------- composer

  function utf8Length(s) {
    return new TextEncoder().encode(s).length;
  }

  function newCid() {
    return 'c' + Date.now().toString(36) + Math.random().toString(36).slice(2, 8);
  }

  function submitMessage() {
    const o = st.open;
    if (!o) return;
    const text = ui.composer.value;
    if (!text.trim()) return;
    if (utf8Length(text) > 4000) { showError('A message has at most 4000 bytes.'); return; }
    const cid = newCid();
    if (!send({ op: 'send', room: o.id, text, cid }, { room: o.id, cid, text })) {
      showError('Not connected: the message was not sent.');
      return;
    }
    ui.composer.value = '';
    autosize();
    st.lastTypingSent = 0;
  }

  function autosize() {
    ui.composer.style.height = 'auto';
    ui.composer.style.height = Math.min(ui.composer.scrollHeight, 160) + 'px';
  }

  ui.composerForm.addEventListener('submit', (e) => { e.preventDefault(); submitMessage(); });
  ui.composer.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); submitMessage(); }
  });
  ui.composer.addEventListener('input', () => {
    autosize();
    const now = Date.now();
    if (st.open && ui.composer.value.trim() && now - st.lastTypingSent >= TYPING_SEND_EVERY_MS) {
      st.lastTypingSent = now;
      send({ op: 'typing', room: st.open.id });
    }
  });

  // ---------------------------------------------------------------- typing line

  function clearTypers() {
    for (const t of st.typers.values()) clearTimeout(t);
    st.typers.clear();
    renderTyping();
  }

  function renderTyping() {
    const names = Array.from(st.typers.keys());
    let text = '';
    if (names.length === 1) text = names[0] + ' is typing…';
    else if (names.length === 2) text = names[0] + ' and ' + names[1] + ' are typing…';
    else if (names.length > 2) text = names.length + ' people are typing…';
    ui.typing.textContent = text;
  }

  function someoneTyping(name) {
    clearTimeout(st.typers.get(name));
    st.typers.set(name, setTimeout(() => { st.typers.delete(name); renderTyping(); }, TYPING_SHOW_MS));
    renderTyping();
  }

  function stoppedTyping(name) {
    if (!st.typers.has(name)) return;
    clearTimeout(st.typers.get(name));
    st.typers.delete(name);
    renderTyping();
  }

  // ---------------------------------------------------------------- people

  function renderOnline() {
    const people = Array.from(st.online, ([id, name]) => ({ id, name }));
    const myId = st.me ? String(st.me.id) : null;
    people.sort((a, b) => (String(a.id) === myId ? -1 : String(b.id) === myId ? 1 : byName(a, b)));
    reconcile(ui.onlineList, 'data-user', people, (u) => u.name,
      (u) => el('li', { class: 'person online' }, avatar(u.name), el('span', { class: 'name' }), el('span', { class: 'you' })),
      (li, u) => {
        li.querySelector('.name').textContent = u.name;
        const you = String(u.id) === myId;
        li.classList.toggle('me', you);
        li.querySelector('.you').textContent = you ? 'you' : '';
      });
    ui.onlineCount.textContent = people.length ? String(people.length) : '';
  }

  function renderMembers() {
    const o = st.open;
    if (!o) { ui.members.replaceChildren(); ui.membersCount.textContent = ''; return; }
    const list = Array.from(o.members.values())
      .sort((a, b) => (b.online ? 1 : 0) - (a.online ? 1 : 0) || byName(a, b));
    reconcile(ui.members, 'data-user', list, (u) => u.name,
      (u) => el('li', { class: 'person' }, avatar(u.name), el('span', { class: 'name' }), el('span', { class: 'dot', 'aria-hidden': 'true' })),
      (li, u) => {
        li.querySelector('.name').textContent = u.name;
        li.classList.toggle('online', !!u.online);
        li.title = u.online ? u.name + ' is online' : u.name + ' is offline';
      });
    const on = list.filter((u) => u.online).length;
    ui.membersCount.textContent = list.length ? on + '/' + list.length : '';
  }

  function renderSearch(users) {
    reconcile(ui.searchResults, 'data-user', users, (u) => nameOf(u),
      (u) => el('li', { class: 'person' }, avatar(nameOf(u)), el('span', { class: 'name' }), el('span', { class: 'dot', 'aria-hidden': 'true' })),
      (li, u) => {
        li.querySelector('.name').textContent = nameOf(u);
        li.classList.toggle('online', !!u.online);
      });
    ui.searchResults.classList.toggle('none', users.length === 0);
  }

  ui.search.addEventListener('input', () => {
    clearTimeout(st.searchTimer);
    st.searchTimer = setTimeout(() => {
      const q = ui.search.value.trim();
      if (Array.from(q).length < 2) {
        st.searchQ = '';
        ui.searchResults.replaceChildren();
        ui.searchResults.classList.remove('none');
        return;
      }
      if (q === st.searchQ) return;
      st.searchQ = q;
      send({ op: 'search', q });
    }, SEARCH_DEBOUNCE_MS);
  });

  // ---------------------------------------------------------------- notifications

  function renderNotifs() {
    const n = st.notifUnread;
    ui.notifCount.textContent = String(n);
    ui.notifCount.classList.toggle('zero', n === 0);
    const items = st.notifs.slice(0, 50);
    ui.notifications.replaceChildren(...items.map((x, i) => {
      const title = x.title != null ? String(x.title) : (nameOf(x.from) ? nameOf(x.from) + ' mentioned you' : 'Notification');
      const unread = typeof x.read === 'boolean' ? !x.read : i < n;
      const li = el('li', { class: unread ? 'notification unread' : 'notification', 'data-id': x.id != null ? String(x.id) : null },
        el('div', { class: 'n-title', text: title }),
        x.body != null && x.body !== '' ? el('div', { class: 'n-body', text: String(x.body) }) : null,
        el('div', { class: 'n-meta', text: [x.room ? '#' + x.room : '', x.ts ? fmtTime(x.ts) : ''].filter(Boolean).join(' · ') }));
      if (x.room) {
        li.tabIndex = 0;
        li.addEventListener('click', () => {
          const r = st.rooms.get(String(x.room));
          if (r && r.joined) openRoom(r.id);
        });
      }
      return li;
    }));
  }

  ui.notifReadBtn.addEventListener('click', () => { send({ op: 'notifications_read' }); });

  // ---------------------------------------------------------------- events

  const handlers = {
    welcome(m) {
      loggedIn = true;
      wanted = true;
      attempt = 0;
      st.me = { id: m.user.id, name: String(m.user.name) };
      st.name = st.me.name;
      save(KEY_NAME, st.name);
      if (m.token) { st.token = String(m.token); save(KEY_TOKEN, st.token); }
      st.ttl = Number(m.presence_ttl_ms) > 0 ? Number(m.presence_ttl_ms) : 60000;

      setHidden(ui.login, true);
      setHidden(ui.meBox, false);
      document.body.classList.remove('logged-out');
      ui.me.textContent = st.me.name;
      ui.meAvatar.textContent = initials(st.me.name);
      ui.meAvatar.style.setProperty('--h', String(hue(st.me.name)));
      ui.loginBtn.disabled = false;
      setStatus('connected');
      clearError();

      st.rooms.clear();
      for (const r of m.all_rooms || []) st.rooms.set(String(r.id), { id: String(r.id), name: r.name ? String(r.name) : String(r.id), joined: false, unread: 0 });
      for (const r of m.rooms || []) st.rooms.set(String(r.id), { id: String(r.id), name: r.name ? String(r.name) : String(r.id), joined: true, unread: Number(r.unread) || 0 });

      st.online.clear();
      for (const u of m.online || []) st.online.set(String(u.id), String(u.name));
      st.online.set(String(st.me.id), st.me.name);
      renderOnline();

      const n = m.notifications || {};
      st.notifs = Array.isArray(n.items) ? n.items.slice().sort((a, b) => Number(b.ts || 0) - Number(a.ts || 0)) : [];
      st.notifUnread = Number(n.unread) || 0;
      renderNotifs();

      startPing();
      // Back in the room that was open before the reconnect / reload.
      const want = st.open ? st.open.id : st.wantRoom;
      st.opening = null;
      if (want && st.rooms.get(want) && st.rooms.get(want).joined) openRoom(want, true);
      else closeRoomView();
      renderRooms();
      if (st.searchQ) send({ op: 'search', q: st.searchQ });
    },

    joined(m) {
      const r = m.room || {};
      const id = String(r.id);
      const room = ensureRoom(id, true);
      if (r.name) room.name = String(r.name);
      room.unread = Number(r.unread) || 0;
      const info = reqs.get(m.req);
      renderRooms();
      if (info && info.op === 'create_room') openRoom(id);
    },

    left(m) { roomLeft(String(typeof m.room === 'object' && m.room ? m.room.id : m.room)); },

    room_created(m) {
      const r = m.room || {};
      const id = String(r.id);
      if (!st.rooms.has(id)) st.rooms.set(id, { id, name: r.name ? String(r.name) : id, joined: false, unread: 0 });
      else if (r.name) st.rooms.get(id).name = String(r.name);
      renderRooms();
    },

    opened(m) {
      const id = String(m.room);
      const r = ensureRoom(id, true);
      r.unread = 0;
      const buffered = st.opening === id ? st.openingBuffer : [];
      st.opening = null;
      st.openingBuffer = [];
      clearTypers();
      st.historyPending = false;
      st.open = { id, msgs: [], ids: new Set(), more: !!m.more, members: new Map() };
      st.wantRoom = id;
      save(KEY_ROOM, id);
      for (const u of m.members || []) {
        const uid = String(u.id);
        st.open.members.set(uid, { id: uid, name: String(u.name), online: !!u.online });
      }

      ui.messages.replaceChildren();
      ui.roomTitle.textContent = r.name;
      ui.roomId.textContent = r.name !== id ? '#' + id : '';
      setHidden(ui.leaveBtn, false);
      setHidden(ui.placeholder, true);
      ui.composer.disabled = false;
      ui.sendBtn.disabled = false;
      addMessages(m.messages || [], 'initial');
      if (addMessages(buffered, 'live') && buffered.some((x) => !isMine(x))) send({ op: 'read', room: id });
      if (!st.open.msgs.length) { setHidden(ui.placeholder, false); ui.placeholder.textContent = 'No messages yet. Say hello!'; }
      updateLoadOlder();
      renderMembers();
      renderRooms();
      if (document.activeElement === document.body || document.activeElement === null ||
          ui.roomsMine.contains(document.activeElement)) ui.composer.focus();
    },

    history(m) {
      st.historyPending = false;
      if (st.open && String(m.room) === st.open.id) {
        addMessages(m.messages || [], 'older');
        st.open.more = !!m.more;
      }
      updateLoadOlder();
    },

    message(m) {
      const msg = m.message || {};
      const id = String(m.room != null ? m.room : msg.room);
      if (msg.from) stoppedTyping(nameOf(msg.from));
      const mine = isMine(msg);
      if (st.open && st.open.id === id) {
        if (addMessages([msg], 'live') && !mine) send({ op: 'read', room: id });
        if (st.open.msgs.length) setHidden(ui.placeholder, true);
        return;
      }
      if (st.opening === id) { st.openingBuffer.push(msg); return; }
      const r = ensureRoom(id, true);   // only members get `message`
      if (!mine) r.unread++;
      renderRooms();
    },

    sent() { /* the message itself comes as `message`, deduplicated by id */ },

    unread(m) {
      const id = String(m.room);
      const r = st.rooms.get(id);
      if (!r) return;
      r.unread = st.open && st.open.id === id ? 0 : Number(m.count) || 0;
      renderRooms();
    },

    typing(m) {
      if (!st.open || String(m.room) !== st.open.id || !m.user) return;
      if (st.me && String(m.user.id) === String(st.me.id)) return;
      someoneTyping(nameOf(m.user));
    },

    member(m) {
      const id = String(m.room);
      const u = m.user || {};
      if (st.me && String(u.id) === String(st.me.id)) {
        if (m.joined) { ensureRoom(id, true); renderRooms(); } else roomLeft(id);
        return;
      }
      if (!st.open || st.open.id !== id) return;
      const uid = String(u.id);
      if (m.joined) st.open.members.set(uid, { id: uid, name: String(u.name), online: st.online.has(uid) });
      else st.open.members.delete(uid);
      renderMembers();
    },

    presence(m) {
      const u = m.user || {};
      const uid = String(u.id);
      const isMe = !!(st.me && uid === String(st.me.id));
      if (m.online) st.online.set(uid, String(u.name));
      else if (!isMe) st.online.delete(uid);
      renderOnline();
      if (st.open && st.open.members.has(uid)) {
        st.open.members.get(uid).online = !!m.online || isMe;
        renderMembers();
      }
      for (const li of ui.searchResults.children) {
        if (li.getAttribute('data-user') === String(u.name)) li.classList.toggle('online', !!m.online);
      }
    },

    notification(m) {
      const n = m.notification;
      if (!n) return;
      if (n.id != null && st.notifs.some((x) => x.id != null && String(x.id) === String(n.id))) return;
      st.notifs.unshift(n);
      st.notifUnread++;
      renderNotifs();
    },

    notifications(m) {
      st.notifUnread = Number(m.unread) || 0;
      if (st.notifUnread === 0) for (const x of st.notifs) if (typeof x.read === 'boolean') x.read = true;
      renderNotifs();
    },

    search(m) {
      if (String(m.q) !== st.searchQ) return;   // an answer to an older query
      renderSearch(Array.isArray(m.users) ? m.users : []);
    },

    pong() { /* lastHeard is updated for every frame */ },

    bye() { onBye(); },

    error(m) {
      const info = reqs.get(m.req);
      const code = String(m.code || 'error');
      let text = m.message ? String(m.message) : code;
      showError(text, code);
      if (code === 'bad_token') {
        st.token = null;
        save(KEY_TOKEN, null);
        if (!loggedIn && st.name) send({ op: 'login', name: st.name }, { by: 'name' });
        else if (!loggedIn) showLoginForm();
        return;
      }
      if (!info) return;
      if (info.op === 'login' && !loggedIn) {
        if (info.by === 'token' && st.name) {
          // The stored token did not work (whatever the reason): log in by name instead.
          st.token = null;
          save(KEY_TOKEN, null);
          send({ op: 'login', name: st.name }, { by: 'name' });
          return;
        }
        ui.loginBtn.disabled = false;
        showLoginForm();
        wanted = false;
      }
      if (info.op === 'send' && info.text != null && !ui.composer.value) {
        ui.composer.value = info.text;   // not sent: give the text back
        autosize();
      }
      if (info.op === 'join') renderRooms();
      if (info.op === 'history') { st.historyPending = false; updateLoadOlder(); }
      if (info.op === 'open' && st.opening === info.room) { st.opening = null; renderRooms(); }
    },
  };

  function isMine(msg) {
    return !!(st.me && msg && msg.from && String(msg.from.id) === String(st.me.id));
  }

  function handle(m) {
    const info = m.req != null ? reqs.get(m.req) : null;
    if (info) info.done = true;
    const fn = handlers[m.ev];
    if (fn) fn(m);
    if (info) reqs.delete(m.req);
  }

  ui.error.addEventListener('click', clearError);

  // ---------------------------------------------------------------- start

  closeRoomView();
  renderNotifs();
  if (st.name) ui.loginName.value = st.name;
  if (st.token || st.name) {
    // A reload: log back in with the stored token (or the name when the token is refused).
    wanted = true;
    setHidden(ui.login, true);
    setStatus('reconnecting…');
    connect();
  } else {
    setStatus('offline');
    ui.loginName.focus();
  }
})();
