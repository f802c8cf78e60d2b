// The Tether inspector: a page served by a gateway (gateway.WithInspector)
// that talks to that gateway only. It lists the managers (rpc.managers),
// describes them (rpc.describe), calls their methods with JSON arguments
// (POST /), opens the handles results give out, follows models as live
// tables (GET /watch, Server-Sent Events) and polls GET /healthz for the
// state of the gateway's link to its server. Plain JavaScript, no build
// step, nothing loaded from elsewhere.
'use strict';

(function () {
  // Every URL is relative to the page (/ui/), so that the inspector keeps
  // working when the gateway is mounted under a prefix.
  const RPC_URL = '../';
  const HEALTH_URL = '../healthz';
  const WATCH_URL = '../watch';
  const TOKEN_KEY = 'tether.inspector.token';
  const HEALTH_EVERY_MS = 1000;

  const state = {
    token: sessionStorage.getItem(TOKEN_KEY) || '',
    nextID: 1,
    current: '',          // the name of the manager or handle on show
    handles: new Map(),   // "ref-…" → {type, from}
    link: '',             // the last link state seen
    tokenPrompt: null,    // the pending token question, if any
  };

  // el makes an element: el('div', {class: 'x', onclick: f}, child, 'text').
  function el(tag, props, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = v;
      else e.setAttribute(k, v === true ? '' : v);
    }
    for (const kid of kids.flat(Infinity)) {
      if (kid === undefined || kid === null || kid === false) continue;
      e.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    }
    return e;
  }

  // $ is the first element sel matches.
  const $ = (sel) => document.querySelector(sel);

  // ---- Talking to the gateway ------------------------------------------

  // RPCError is a JSON-RPC error object from the gateway, or one the page
  // makes when the gateway cannot be reached (code 0).
  class RPCError extends Error {
    constructor(obj) {
      super(obj.message);
      this.code = obj.code;
      this.data = obj.data || {};
    }
  }

  // authHeaders are a request's headers: JSON, and the token when there is one.
  function authHeaders() {
    const h = {'Content-Type': 'application/json'};
    if (state.token) h.Authorization = 'Bearer ' + state.token;
    return h;
  }

  // rpc calls method with params and returns its result, asking for the
  // token when the gateway wants one.
  async function rpc(method, params) {
    const body = JSON.stringify({jsonrpc: '2.0', id: state.nextID++, method, params: params || []});
    let res;
    try {
      res = await fetch(RPC_URL, {method: 'POST', headers: authHeaders(), body, cache: 'no-store'});
    } catch (e) {
      throw new RPCError({code: 0, message: 'the gateway did not answer: ' + e.message, data: {name: 'inspector.gateway-unreachable'}});
    }
    if (res.status === 401) {
      await askToken(state.token ? 'The gateway refused the token: give the right one.' : '');
      return rpc(method, params);
    }
    if (res.status === 204) return null;
    let answer;
    try {
      answer = await res.json();
    } catch (e) {
      throw new RPCError({code: 0, message: `the gateway answered HTTP ${res.status} without JSON`, data: {name: 'inspector.bad-answer'}});
    }
    if (answer.error) throw new RPCError(answer.error);
    return answer.result;
  }

  // askToken shows the token dialog once, however many requests wait for it.
  function askToken(why) {
    if (state.tokenPrompt) return state.tokenPrompt;
    const dlg = $('#token-dialog');
    if (why) $('#token-why').textContent = why;
    state.tokenPrompt = new Promise((resolve) => {
      $('#token-form').onsubmit = (ev) => {
        ev.preventDefault();
        state.token = $('#token-input').value.trim();
        sessionStorage.setItem(TOKEN_KEY, state.token);
        dlg.close();
        state.tokenPrompt = null;
        resolve();
      };
    });
    dlg.showModal();
    return state.tokenPrompt;
  }

  // ---- The upstream link -------------------------------------------------

  // linkViews say how each state of the gateway's client is shown.
  const linkViews = {
    connected: {cls: 'up', text: 'connected'},
    connecting: {cls: 'pending', text: 'connecting', detail: 'the gateway is dialling its server'},
    waiting: {cls: 'down', text: 'disconnected', detail: 'the server is out of reach; the gateway retries'},
    refused: {cls: 'down', text: 'refused', detail: 'the server refuses the gateway\'s credentials'},
    closed: {cls: 'down', text: 'closed', detail: 'the gateway is closed'},
  };

  // linkView is how a /healthz answer is shown.
  function linkView(h) {
    const v = Object.assign({}, linkViews[h.link] || {cls: 'pending', text: h.link || 'unknown'});
    if (h.link === 'connected') {
      v.detail = h.status === 'serving' ? 'server serving' : 'server ' + h.status;
      if (h.status !== 'serving') v.cls = 'pending';
    }
    return v;
  }

  // pollHealth asks /healthz every second, one probe at a time.
  async function pollHealth() {
    let v;
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), 5000);
    try {
      const res = await fetch(HEALTH_URL, {cache: 'no-store', signal: ctl.signal});
      const h = await res.json();
      v = linkView(h);
      v.link = h.link;
    } catch (e) {
      v = e.name === 'AbortError'
        ? {cls: 'pending', text: 'not answering', detail: 'no health answer within 5 s: the server may be stuck', link: 'slow'}
        : {cls: 'down', text: 'gateway unreachable', detail: 'this page cannot reach the gateway', link: 'gone'};
    }
    clearTimeout(timer);
    showLink(v);
    setTimeout(pollHealth, HEALTH_EVERY_MS);
  }

  // showLink shows the link state in the header; when the link comes back
  // a manager list that failed is asked again.
  function showLink(v) {
    const box = $('#link');
    box.className = 'link ' + v.cls;
    box.dataset.state = v.text;
    box.querySelector('.link-text').textContent = v.text;
    box.querySelector('.link-detail').textContent = v.detail || '';
    const was = state.link;
    state.link = v.link;
    if (v.link === 'connected' && was !== 'connected' && $('#managers .error')) loadManagers();
  }

  // ---- Managers and handles ----------------------------------------------

  // loadManagers lists the managers in the sidebar, or says why it cannot.
  async function loadManagers() {
    const list = $('#managers');
    list.replaceChildren(el('li', {class: 'muted'}, 'loading…'));
    let names;
    try {
      names = await rpc('rpc.managers');
    } catch (e) {
      list.replaceChildren(el('li', {class: 'error'}, e.message));
      return;
    }
    if (!names.length) {
      list.replaceChildren(el('li', {class: 'muted'}, 'The server has no managers.'));
      return;
    }
    list.replaceChildren(...names.map((n) => el('li', {},
      el('button', {type: 'button', class: 'target', 'data-target': n, onclick: () => openTarget(n)}, n))));
    markCurrent();
  }

  // addHandle remembers a handle a result gave out and lists it.
  function addHandle(ref, type, from) {
    if (!state.handles.has(ref)) state.handles.set(ref, {type: type || 'reference', from});
    showHandles();
  }

  // showHandles lists the handles results gave out, newest last.
  function showHandles() {
    const list = $('#handles');
    if (!state.handles.size) {
      list.replaceChildren(el('li', {class: 'muted'}, 'References in results appear here.'));
      return;
    }
    list.replaceChildren(...[...state.handles].map(([ref, h]) => el('li', {},
      el('button', {type: 'button', class: 'target handle-target', 'data-target': ref, title: ref + (h.from ? '\nfrom ' + h.from : ''), onclick: () => openTarget(ref)},
        el('span', {class: 'type'}, shortType(h.type)), el('span', {class: 'ref'}, shortRef(ref))))));
    markCurrent();
  }

  // markCurrent highlights the manager or handle on show in the sidebar.
  function markCurrent() {
    for (const b of document.querySelectorAll('#sidebar .target')) {
      b.classList.toggle('current', b.dataset.target === state.current);
    }
  }

  // shortRef is a handle's id cut to a readable length (the title has it whole).
  function shortRef(ref) { return ref.slice(0, 12) + '…'; }
  // shortType is a Go type without its pointer and package: *main.Session is Session.
  function shortType(t) { return (t || '').replace(/^\*/, '').replace(/^.*\./, '') || 'reference'; }

  // ---- A manager or a handle ---------------------------------------------

  // openTarget shows the methods of a manager or a handle.
  async function openTarget(name) {
    state.current = name;
    markCurrent();
    const isHandle = name.startsWith('ref-');
    const h = state.handles.get(name);
    const view = $('#target');
    const head = el('div', {class: 'target-head'},
      el('h1', {}, isHandle ? el('span', {}, 'handle ', el('code', {}, shortType(h && h.type))) : name),
      el('div', {class: 'target-type'}, isHandle ? name : ''),
      isHandle ? el('button', {type: 'button', class: 'danger release', onclick: () => release(name)}, 'Release') : null);
    // The head stays in place while the body below it fills in, so that
    // its Release button is not replaced under the user's pointer.
    const body = el('div', {class: 'target-body'}, el('p', {class: 'muted'}, 'describing…'));
    view.replaceChildren(head, body);
    let desc;
    try {
      desc = await rpc('rpc.describe', [name]);
    } catch (e) {
      if (state.current === name) body.replaceChildren(errorBox(e));
      return;
    }
    if (state.current !== name) return; // the user moved on meanwhile
    head.querySelector('.target-type').textContent = (isHandle ? name + ' · ' : '') + desc.type;
    const sigs = signaturesOf(desc);
    const methods = (desc.methods || []).map((md) => methodCard(name, md, sigs.get(md.name)));
    body.replaceChildren(...(methods.length ? methods : [el('p', {class: 'muted'}, 'Nothing callable.')]));
    if (desc.skipped && desc.skipped.length) {
      body.append(el('p', {class: 'muted skipped'}, 'Not callable: ' + desc.skipped.map((s) => s.name || s).join(', ')));
    }
  }

  // release gives a handle back to the gateway (rpc.release) and forgets
  // it; one the gateway no longer knows (it expired) is forgotten too.
  async function release(ref) {
    try {
      await rpc('rpc.release', [ref]);
    } catch (e) {
      if (e.data.name !== 'tether.unknown-handle') {
        $('#target').append(errorBox(e));
        return;
      }
    }
    state.handles.delete(ref);
    showHandles();
    state.current = '';
    $('#target').replaceChildren(el('p', {class: 'muted'}, 'Released ' + ref + '.'));
  }

  // signaturesOf maps method names to the Go signatures, with parameter
  // names, of the registered interfaces the object implements.
  function signaturesOf(desc) {
    const m = new Map();
    for (const iface of desc.interfaces || []) {
      for (const sig of iface.methods || []) {
        const name = sig.split('(')[0].trim();
        if (!m.has(name)) m.set(name, sig);
      }
    }
    return m;
  }

  // goType is how a parameter or result type reads in a signature.
  function goType(td) { return td ? td.go : ''; }

  // signature is a method's Go signature without the context:
  // Get(string) (demo.User, error).
  function signature(md, named) {
    if (named) return named.replace(/ctx context\.Context,?\s*/, '');
    const params = (md.params || []).map((td, i) => {
      const last = i === md.params.length - 1;
      return md.variadic && last && td.elem ? '...' + goType(td.elem) : goType(td);
    });
    const result = md.result ? `(${goType(md.result)}, error)` : 'error';
    return `${md.name}(${params.join(', ')}) ${result}`;
  }

  // paramNames are the parameter names a named signature gives, after the
  // context, or [] when it gives none (or not one per parameter).
  function paramNames(md, named) {
    if (!named) return [];
    const sig = signature(md, named);
    const open = sig.indexOf('(');
    let depth = 0;
    let end = open;
    for (let i = open; i < sig.length; i++) {
      if ('([{'.includes(sig[i])) depth++;
      if (')]}'.includes(sig[i]) && --depth === 0) { end = i; break; }
    }
    const parts = [];
    let cur = '';
    depth = 0;
    for (const ch of sig.slice(open + 1, end)) {
      if ('([{'.includes(ch)) depth++;
      if (')]}'.includes(ch)) depth--;
      if (ch === ',' && depth === 0) { parts.push(cur.trim()); cur = ''; } else cur += ch;
    }
    if (cur.trim()) parts.push(cur.trim());
    const names = parts.map((p) => (/^([A-Za-z_]\w*)\s+\S/.exec(p) || [])[1]);
    return names.length === (md.params || []).length && names.every(Boolean) ? names : [];
  }

  // returnsModel reports whether a method returns a model, which can be watched.
  function returnsModel(md) { return !!(md.result && md.result.kind === 'cacheable'); }

  // methodCard is a method's signature, a form for its arguments, its Call
  // (and Watch, for a model) button and where its answer appears.
  function methodCard(target, md, named) {
    const names = paramNames(md, named);
    const inputs = (md.params || []).map((td, i) => argInput(md, td, i, names[i]));
    const out = el('div', {class: 'output'});
    const call = el('button', {type: 'button', class: 'primary call'}, 'Call');
    const card = el('section', {class: 'method', 'data-method': md.name},
      el('div', {class: 'sig'}, el('code', {}, sigNode(md, named)),
        md.idempotent ? el('span', {class: 'tag', title: 'safe to repeat after an outage'}, 'idempotent') : null,
        returnsModel(md) ? el('span', {class: 'tag model-tag'}, 'model') : null),
      inputs.length ? el('div', {class: 'args'}, inputs.map((x) => x.row)) : el('div', {class: 'args muted'}, 'No arguments.'),
      el('div', {class: 'buttons'}, call,
        returnsModel(md) ? el('button', {type: 'button', class: 'watch', onclick: () => {
          const params = readArgs(md, inputs, out);
          if (params) openWatch(target, md, params);
        }}, 'Watch') : null),
      out);
    call.addEventListener('click', () => invoke(target, md, inputs, out, call));
    for (const x of inputs) {
      x.input.addEventListener('keydown', (ev) => {
        if (ev.key === 'Enter' && (x.input.tagName === 'INPUT' || ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); call.click(); }
      });
    }
    return card;
  }

  // sigNode is the signature with the method's name emphasised.
  function sigNode(md, named) {
    const sig = signature(md, named);
    const cut = sig.indexOf('(');
    return [el('span', {class: 'mname'}, sig.slice(0, cut)), sig.slice(cut)];
  }

  // argInput is the labelled input of one argument: its name when the
  // signature gives one, else its position.
  function argInput(md, td, i, name) {
    const variadic = md.variadic && i === md.params.length - 1;
    const kind = variadic ? 'array' : td.kind;
    const big = ['struct', 'copyable', 'array', 'map', 'any'].includes(kind);
    const input = big ? el('textarea', {class: 'arg', rows: 3, spellcheck: 'false'}) : el('input', {class: 'arg', type: 'text', spellcheck: 'false'});
    input.placeholder = variadic ? 'a JSON array of ' + goType(td.elem) : example(td);
    if (big && !variadic) input.value = template(td);
    const label = variadic ? '...' + goType(td.elem) : goType(td);
    const row = el('label', {class: 'arg-row'}, el('span', {class: 'arg-name'}, name || `p${i + 1}`), el('span', {class: 'arg-type'}, label), input);
    return {row, input, td, variadic};
  }

  // example is a placeholder value for a type, in JSON.
  function example(td) {
    switch (td.kind) {
      case 'string': return '"text"';
      case 'int': case 'uint': return '42';
      case 'float': return '1.5';
      case 'bool': return 'true';
      case 'bytes': return '"aGVsbG8=" (base64)';
      case 'time': return '"2026-01-02T15:04:05Z"';
      case 'reference': return '{"$ref": "ref-…"}';
      default: return 'JSON';
    }
  }

  // template is a starting value for a composite argument.
  function template(td) {
    const zero = (t, depth) => {
      if (!t || depth > 3) return null;
      switch (t.kind) {
        case 'string': case 'bytes': return '';
        case 'time': return new Date().toISOString().replace(/\.\d+Z$/, 'Z');
        case 'int': case 'uint': case 'float': return 0;
        case 'bool': return false;
        case 'array': return [];
        case 'map': return {};
        case 'struct': case 'copyable': {
          const o = t.kind === 'copyable' && t.name ? {$type: t.name} : {};
          for (const f of t.fields || []) o[f.name] = zero(f.type, depth + 1);
          return o;
        }
        default: return null;
      }
    };
    const v = zero(td, 0);
    return v === null ? '' : JSON.stringify(v, null, 1).replace(/\n\s*/g, ' ');
  }

  // readArgs reads the form's arguments as the request's params, or shows
  // what is wrong and returns null.
  function readArgs(md, inputs, out) {
    const params = [];
    for (const [i, x] of inputs.entries()) {
      const text = x.input.value.trim();
      x.input.classList.remove('bad');
      if (text === '' && x.variadic) continue;
      let v;
      try {
        if (text === '') throw new Error(`write a JSON value, such as ${example(x.td)}`);
        v = JSON.parse(text);
      } catch (e) {
        x.input.classList.add('bad');
        x.input.focus();
        out.replaceChildren(errorBox(new RPCError({code: 0, message: `p${i + 1} (${goType(x.td)}) is not JSON: ${e.message}`, data: {name: 'inspector.bad-argument'}})));
        return null;
      }
      if (x.variadic) {
        if (!Array.isArray(v)) {
          x.input.classList.add('bad');
          out.replaceChildren(errorBox(new RPCError({code: 0, message: `p${i + 1} takes a JSON array of the variadic arguments`, data: {name: 'inspector.bad-argument'}})));
          return null;
        }
        params.push(...v);
      } else {
        params.push(v);
      }
    }
    return params;
  }

  // invoke calls the method with the form's arguments and shows the answer.
  async function invoke(target, md, inputs, out, button) {
    const params = readArgs(md, inputs, out);
    if (!params) return;
    const method = target + '.' + md.name;
    button.disabled = true;
    out.replaceChildren(el('p', {class: 'muted'}, 'calling ' + method + '…'));
    const t0 = performance.now();
    try {
      const result = await rpc(method, params);
      const ms = Math.round(performance.now() - t0);
      out.replaceChildren(el('div', {class: 'result ok'},
        el('div', {class: 'result-head'}, el('span', {class: 'ok-mark'}, '✓'), ` ${md.result ? 'result' : 'done'} · ${ms} ms`),
        md.result ? el('pre', {class: 'json'}, renderJSON(result, '', method)) : null));
    } catch (e) {
      out.replaceChildren(errorBox(e));
    } finally {
      out.append(asCurl(callCurl(method, params)));
      button.disabled = false;
    }
  }

  // shellQuote quotes s for a POSIX shell.
  function shellQuote(s) { return "'" + s.replace(/'/g, "'\\''") + "'"; }

  // callCurl is the curl command that makes the same call, so that what
  // works here can go into a script (the token stays a variable).
  function callCurl(method, params) {
    const body = JSON.stringify({jsonrpc: '2.0', id: 1, method, params});
    const auth = state.token ? ` -H "Authorization: Bearer $TETHER_HTTP_TOKEN"` : '';
    return `curl -s -H 'Content-Type: application/json'${auth} \\\n  -d ${shellQuote(body)} ${new URL(RPC_URL, location.href).href}`;
  }

  // watchCurl is the curl command that follows the same model.
  function watchCurl(method, params) {
    const q = new URLSearchParams({method, params: JSON.stringify(params)});
    const auth = state.token ? ` -H "Authorization: Bearer $TETHER_HTTP_TOKEN"` : '';
    return `curl -N${auth} ${shellQuote(new URL(WATCH_URL, location.href).href + '?' + q.toString())}`;
  }

  // asCurl is a folded "as curl" box showing a command.
  function asCurl(cmd) {
    return el('details', {class: 'curl'}, el('summary', {}, 'as curl'), el('pre', {}, cmd));
  }

  // errorBox shows an error: its name, its message and its code, in red.
  function errorBox(e) {
    const data = e.data || {};
    const code = e.code ? `code ${e.code}` + (data.code ? ` · ${data.code}` : '') : (data.code || '');
    return el('div', {class: 'result error', role: 'alert'},
      el('div', {class: 'err-name'}, data.name || 'error'),
      el('div', {class: 'err-message'}, e.message),
      code ? el('div', {class: 'err-code'}, code) : null,
      data.traceback ? el('details', {}, el('summary', {}, 'traceback'), el('pre', {}, data.traceback)) : null);
  }

  // ---- JSON, with handles and models -------------------------------------

  // renderJSON renders a result as indented JSON in which handles are
  // buttons that open them and models show as tables.
  function renderJSON(v, indent, from) {
    if (v === null) return el('span', {class: 'j-null'}, 'null');
    switch (typeof v) {
      case 'string': return el('span', {class: 'j-str'}, JSON.stringify(v));
      case 'number': return el('span', {class: 'j-num'}, String(v));
      case 'boolean': return el('span', {class: 'j-bool'}, String(v));
    }
    if (Array.isArray(v)) {
      if (!v.length) return el('span', {}, '[]');
      if (v.every((x) => x === null || typeof x !== 'object') && JSON.stringify(v).length <= 72) {
        return el('span', {}, '[', v.map((x, i) => [renderJSON(x, '', from), i < v.length - 1 ? ', ' : '']), ']');
      }
      const inner = indent + '  ';
      return el('span', {}, '[\n', v.map((x, i) => [inner, renderJSON(x, inner, from), i < v.length - 1 ? ',\n' : '\n']), indent + ']');
    }
    if (typeof v.$ref === 'string') return handleChip(v, from);
    if ('$cacheable' in v && Array.isArray(v.entries)) return modelSnapshot(v);
    const keys = Object.keys(v);
    if (!keys.length) return el('span', {}, '{}');
    const inner = indent + '  ';
    return el('span', {}, '{\n', keys.map((k, i) => [inner, el('span', {class: 'j-key'}, JSON.stringify(k)), ': ',
      renderJSON(v[k], inner, from), i < keys.length - 1 ? ',\n' : '\n']), indent + '}');
  }

  // compactJSON renders a value in a table cell: text as it is, an
  // object as its fields (name, then value), a Copyable with its type.
  function compactJSON(v) {
    if (v === null || typeof v !== 'object') {
      return typeof v === 'string' ? el('span', {class: 'j-str'}, v) : jsonAtom(v);
    }
    if (typeof v.$ref === 'string') return handleChip(v, 'a model');
    if (Array.isArray(v)) return jsonAtom(v);
    const keys = Object.keys(v).filter((k) => k !== '$type');
    return el('span', {class: 'fields'}, v.$type ? el('span', {class: 'tag'}, v.$type) : null,
      keys.map((k) => el('span', {class: 'field'}, el('span', {class: 'j-key'}, k), ' ', jsonAtom(v[k]))));
  }

  // jsonAtom is a value as compact JSON, coloured by its kind.
  function jsonAtom(v) {
    const cls = {string: 'j-str', number: 'j-num', boolean: 'j-bool'}[typeof v] || (v === null ? 'j-null' : '');
    return el('span', {class: cls}, JSON.stringify(v));
  }

  // handleChip is a handle in a result: a button that opens it.
  function handleChip(v, from) {
    addHandle(v.$ref, v.type, from);
    return el('button', {type: 'button', class: 'handle', 'data-ref': v.$ref, title: 'open ' + v.$ref, onclick: () => openTarget(v.$ref)},
      el('span', {class: 'arrow'}, '→ '), el('span', {class: 'type'}, shortType(v.type)), ' ', el('span', {class: 'ref'}, shortRef(v.$ref)));
  }

  // modelSnapshot shows a model in a result: its entries as a table.
  function modelSnapshot(v) {
    const rows = v.entries.map((e) => el('tr', {}, el('td', {class: 'key'}, compactJSON(e.key)), el('td', {}, compactJSON(e.value))));
    return el('div', {class: 'snapshot'},
      el('div', {class: 'muted'}, `model ${v.$cacheable} · version ${v.version} · ${v.entries.length} entries (a snapshot: press Watch to follow it)`),
      el('table', {class: 'entries'}, el('thead', {}, el('tr', {}, el('th', {}, 'key'), el('th', {}, 'value'))), el('tbody', {}, rows)));
  }

  // ---- Live models ---------------------------------------------------------

  // openWatch opens a live table of the model the method returns, fed by
  // /watch.
  function openWatch(target, md, params) {
    const method = target + '.' + md.name;
    const q = new URLSearchParams({method, params: JSON.stringify(params)});
    if (state.token) q.set('access_token', state.token);
    const w = {rows: new Map(), started: false, es: null};
    w.badge = el('span', {class: 'badge pending model-state', 'data-state': 'connecting'}, 'connecting');
    w.version = el('span', {class: 'version'}, '');
    w.count = el('span', {class: 'count'}, '');
    w.note = el('div', {class: 'watch-note muted'}, 'waiting for the snapshot…');
    w.body = el('tbody', {});
    const title = shortTitle(target) + '.' + md.name + '(' + params.map((p) => JSON.stringify(p)).join(', ') + ')';
    w.panel = el('section', {class: 'watch-panel', 'data-method': method},
      el('div', {class: 'watch-head'}, el('h2', {}, el('span', {class: 'live-icon'}, '◉ '), title), w.badge, w.version, w.count,
        el('button', {type: 'button', class: 'icon close', title: 'stop watching', onclick: () => closeWatch(w)}, '✕')),
      el('table', {class: 'entries model-table'}, el('thead', {}, el('tr', {}, el('th', {}, 'key'), el('th', {}, 'value'))), w.body),
      w.note, asCurl(watchCurl(method, params)));
    $('#watches').prepend(w.panel);
    w.panel.scrollIntoView({block: 'nearest'});
    w.url = WATCH_URL + '?' + q.toString();
    w.es = new EventSource(w.url);
    for (const kind of ['snapshot', 'set', 'delete', 'stale', 'live', 'reset']) {
      w.es.addEventListener(kind, (ev) => onWatchEvent(w, JSON.parse(ev.data)));
    }
    w.es.addEventListener('error', (ev) => onWatchError(w, ev));
  }

  // shortTitle is a target's name in a table's title.
  function shortTitle(target) { return target.startsWith('ref-') ? shortRef(target) : target; }

  // closeWatch ends a watch: its stream, then its panel.
  function closeWatch(w) {
    w.es.close();
    w.panel.remove();
  }

  // onWatchError tells an error the gateway sent (the stream ends) from a
  // lost stream (EventSource dials again by itself).
  function onWatchError(w, ev) {
    if (typeof ev.data === 'string') {
      w.es.close();
      let obj;
      try { obj = JSON.parse(ev.data); } catch (e) { obj = {message: ev.data}; }
      setBadge(w, 'error', 'down');
      w.note.replaceChildren(errorBox(new RPCError(obj)));
      return;
    }
    if (w.es.readyState === EventSource.CLOSED) {
      setBadge(w, 'closed', 'down');
      w.note.textContent = 'The gateway refused the watch.';
      explainRefusal(w);
    } else {
      setBadge(w, 'reconnecting', 'pending');
      w.note.textContent = 'The stream from the gateway broke; reconnecting…';
    }
  }

  // explainRefusal asks /watch again with fetch, which, unlike
  // EventSource, can read the JSON-RPC error that says why it refused.
  async function explainRefusal(w) {
    const ctl = new AbortController();
    try {
      const res = await fetch(w.url, {headers: authHeaders(), cache: 'no-store', signal: ctl.signal});
      if ((res.headers.get('Content-Type') || '').startsWith('application/json')) {
        const answer = await res.json();
        if (answer.error) w.note.replaceChildren(errorBox(new RPCError(answer.error)));
      } else {
        w.note.textContent = `The gateway answered HTTP ${res.status}: is /watch there (an older gateway)?`;
      }
    } catch (e) {
      w.note.textContent = 'The gateway refused the watch, and could not say why: ' + e.message;
    } finally {
      ctl.abort(); // a stream that did start this time is not read
    }
  }

  // setBadge shows a table's state (live, stale, ...) in its badge; a stale
  // table is greyed out.
  function setBadge(w, text, cls) {
    w.panel.classList.toggle('is-stale', text === 'stale');
    w.badge.textContent = text;
    w.badge.dataset.state = text;
    w.badge.className = 'badge model-state ' + cls;
  }

  // onWatchEvent applies one event of /watch to the table.
  function onWatchEvent(w, ev) {
    const at = new Date().toLocaleTimeString();
    switch (ev.event) {
      case 'snapshot': applySnapshot(w, ev); w.note.textContent = `snapshot at ${at}`; break;
      case 'set': upsertRow(w, ev.key, ev.value, true); w.note.textContent = `set ${keyText(ev.key)} at ${at}`; break;
      case 'delete': deleteRow(w, ev.key); w.note.textContent = `deleted ${keyText(ev.key)} at ${at}`; break;
      case 'stale': setBadge(w, 'stale', 'pending'); w.note.textContent = `the model's server is out of reach since ${at}; the table shows its last state`; break;
      case 'live': setBadge(w, 'live', 'up'); w.note.textContent = `live again at ${at}`; break;
      case 'reset': w.note.textContent = `the model was replaced at ${at} (a new instance, epoch ${ev.epoch.slice(0, 8)}…): changes follow`; break;
    }
    if (ev.version !== undefined) w.version.textContent = '· version ' + ev.version;
    if (ev.epoch) w.version.title = 'epoch ' + ev.epoch;
    w.count.textContent = '· ' + w.rows.size + (w.rows.size === 1 ? ' entry' : ' entries');
  }

  // applySnapshot makes the table the snapshot's entries: a resync after a
  // reconnection highlights what changed meanwhile.
  function applySnapshot(w, ev) {
    const seen = new Set();
    for (const e of ev.entries || []) {
      seen.add(keyText(e.key));
      upsertRow(w, e.key, e.value, w.started);
    }
    for (const k of [...w.rows.keys()]) {
      if (!seen.has(k)) deleteRow(w, JSON.parse(k));
    }
    w.started = true;
    if (w.badge.dataset.state !== 'stale') setBadge(w, 'live', 'up');
  }

  // keyText is a key as the JSON text the rows are indexed by.
  function keyText(key) { return JSON.stringify(key); }

  // upsertRow sets a row, in key order, highlighting it when its value
  // changed.
  function upsertRow(w, key, value, flash) {
    const k = keyText(key);
    const text = JSON.stringify(value);
    let row = w.rows.get(k);
    if (row && row.dataset.value === text) return;
    const cells = [el('td', {class: 'key'}, compactJSON(key)), el('td', {class: 'value'}, compactJSON(value))];
    if (row) {
      row.replaceChildren(...cells);
    } else {
      row = el('tr', {'data-key': typeof key === 'string' ? key : k}, cells);
      const before = [...w.rows.keys()].filter((x) => x > k).sort()[0];
      if (before !== undefined) w.body.insertBefore(row, w.rows.get(before));
      else w.body.append(row);
      w.rows.set(k, row);
    }
    row.dataset.value = text;
    if (flash) {
      row.classList.remove('flash');
      void row.offsetWidth; // restart the animation
      row.classList.add('flash');
    }
  }

  // deleteRow fades a deleted entry's row out, then removes it.
  function deleteRow(w, key) {
    const k = keyText(key);
    const row = w.rows.get(k);
    if (!row) return;
    w.rows.delete(k);
    row.classList.add('gone');
    setTimeout(() => row.remove(), 400);
  }

  // ---- Start ---------------------------------------------------------------

  $('#gateway').textContent = 'gateway ' + location.host;
  $('#refresh').addEventListener('click', loadManagers);
  pollHealth();
  loadManagers();
})();
