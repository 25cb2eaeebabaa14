// todo-wsgi's browser client: a client of the same API, nothing more (docs/web-client.md).
//
// Rules a reviewer can check with grep:
// - data reaches the page through textContent, value and single attributes only, never as markup
//   (no property or call that parses HTML appears in this file: tests/test_web_client.py);
// - the access token lives in this script's memory only; the refresh token in sessionStorage, so
//   the session survives a reload of the tab but not the tab;
// - every URL is relative ("todo", "todo/5"), so the client works below any mount prefix;
// - fetch never sends cookies (credentials: "omit"): the token goes in Authorization: Bearer.
"use strict";

const PAGE = 20; // to-dos per page
const REFRESH_KEY = "todo-wsgi.refresh_token";
const $ = (id) => document.getElementById(id);

const state = {
  access: null, // the access token (memory only)
  me: null, // the signed-in account, as GET me answers it
  offset: 0, // of the page of to-dos shown
  etags: new Map(), // API path -> strong ETag of the version last seen, sent back as If-Match
  refreshing: null, // the one refresh in flight, shared by every 401 that meets it
};

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// -- talking to the API ------------------------------------------------------------

async function send(method, path, body, headers = {}) {
  const init = { method, headers, credentials: "omit", cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, "Could not reach the server. Check the connection and try again.");
  }
  const text = await response.text();
  let data = {};
  try {
    data = text ? JSON.parse(text) : {};
  } catch {
    // Not JSON (a proxy's error page): the status line speaks for it below.
  }
  return { response, data };
}

function keepTokens(answer) {
  state.access = answer.token;
  if (answer.refresh_token) sessionStorage.setItem(REFRESH_KEY, answer.refresh_token);
}

function dropTokens() {
  state.access = state.me = null;
  state.etags.clear();
  sessionStorage.removeItem(REFRESH_KEY);
}

// One refresh at a time (API.md, "Sessions"): a refresh token is spent by its first use, and
// a second use of it ends the whole session, so concurrent 401s must share one refresh.
function refresh() {
  state.refreshing ??= (async () => {
    const refreshToken = sessionStorage.getItem(REFRESH_KEY);
    if (!refreshToken) return false;
    const { response, data } = await send("POST", "refresh", { refresh_token: refreshToken });
    if (response.status === 401 || response.status === 404) {
      sessionStorage.removeItem(REFRESH_KEY); // spent, expired, ended: the session is over
      return false;
    }
    if (!response.ok) throw new ApiError(response.status, data.message || `The server answered ${response.status}.`);
    keepTokens(data);
    return true;
  })().finally(() => {
    state.refreshing = null;
  });
  return state.refreshing;
}

// A call with the access token. A 401 refreshes once (or takes the token another call just
// got) and tries again; a second 401 ends the session and returns to the sign-in form.
// Writes send If-Match with the ETag of the version last seen (RFC 9110 13.1.1).
async function api(method, path, body) {
  const headers = {};
  const etag = state.etags.get(path);
  if (etag && method !== "GET") headers["If-Match"] = etag;
  for (let attempt = 0; ; attempt++) {
    const used = state.access;
    const { response, data } = await send(method, path, body, { ...headers, Authorization: `Bearer ${used}` });
    if (response.status === 401 && attempt === 0 && (state.access !== used || (await refresh()))) continue;
    if (response.status === 401) {
      endSession("Your session has ended. Please sign in again.", true);
      throw new ApiError(401, ""); // already said
    }
    const tag = response.headers.get("ETag");
    if (response.ok && tag && !tag.startsWith("W/")) state.etags.set(path, tag);
    if (response.status === 412 || (method === "DELETE" && response.ok)) state.etags.delete(path);
    if (!response.ok) throw new ApiError(response.status, data.message || `The server answered ${response.status}.`);
    return { data, response };
  }
}

// RFC 7617 2.1: the name and password as UTF-8, so any name the API takes can sign in.
function basic(name, password) {
  const bytes = new TextEncoder().encode(`${name}:${password}`);
  return `Basic ${btoa(String.fromCharCode(...bytes))}`;
}

async function signIn(name, password) {
  const { response, data } = await send("POST", "login", undefined, { Authorization: basic(name, password) });
  if (response.status === 401) throw new ApiError(401, "Could not verify: wrong name or password.");
  if (!response.ok) throw new ApiError(response.status, data.message || `The server answered ${response.status}.`);
  keepTokens(data);
}

// -- what the person sees ------------------------------------------------------------

function show(text, isError = false) {
  $("message").textContent = text;
  $("message").classList.toggle("error", isError);
}

// Runs one of the person's actions: whatever goes wrong is said on the page, in words.
async function run(action) {
  try {
    await action();
  } catch (error) {
    if (error instanceof ApiError) {
      if (error.message) show(error.message, true);
    } else {
      show(`Something went wrong in this page: ${error.message}`, true);
      throw error; // and in the console, for whoever debugs it
    }
  }
}

function screen(signedIn) {
  $("sign-in").hidden = signedIn;
  for (const id of ["who", "sign-out", "todos", "change-password"]) $(id).hidden = !signedIn;
  $("accounts").hidden = !(signedIn && state.me?.admin);
}

function endSession(message, isError = false) {
  dropTokens();
  screen(false);
  show(message, isError);
  $("name").focus();
}

// After a sign-in, or a refresh when the page loads: who am I, my to-dos, and (admins) accounts.
async function enter() {
  const { data } = await api("GET", "me");
  state.me = data.user;
  $("who").textContent = `Signed in as ${state.me.name}${state.me.admin ? " (admin)" : ""}`;
  screen(true);
  state.offset = 0;
  await loadTodos();
  if (state.me.admin) await loadAccounts();
}

function fromTemplate(id) {
  return $(id).content.firstElementChild.cloneNode(true);
}

function hasNext(response) {
  return /rel="next"/.test(response.headers.get("Link") || ""); // RFC 8288
}

// One inline form at a time: a labelled field, Save and Cancel (Escape cancels too).
function inlineForm(row, label, { value = "", type = "text", autocomplete = "off" }, save) {
  document.querySelector("form.inline")?.remove();
  const form = fromTemplate("inline-form");
  const input = form.querySelector("input");
  form.querySelector("span").textContent = label;
  Object.assign(input, { value, type, autocomplete });
  const close = () => {
    form.remove();
    row.querySelector("button")?.focus();
  };
  form.querySelector("button[type=button]").addEventListener("click", close);
  form.addEventListener("keydown", (event) => event.key === "Escape" && close());
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    run(() => save(input.value));
  });
  row.append(form);
  input.focus();
}

// -- to-dos ----------------------------------------------------------------------------

async function loadTodos() {
  const { data, response } = await api("GET", `todo?limit=${PAGE}&offset=${state.offset}`);
  if (data.todos.length === 0 && state.offset > 0) {
    state.offset = Math.max(0, state.offset - PAGE); // the last one of a page went: go back one
    return loadTodos();
  }
  $("todo-list").replaceChildren(...data.todos.map(todoRow));
  $("empty").hidden = data.todos.length > 0;
  $("previous").disabled = state.offset === 0;
  $("next").disabled = !hasNext(response);
  $("page").textContent = `Page ${state.offset / PAGE + 1}`;
}

function todoRow(todo) {
  const row = fromTemplate("todo-row");
  const box = row.querySelector("input");
  const label = row.querySelector("label");
  const [edit, remove] = row.querySelectorAll("button");
  box.id = `todo-${todo.id}`;
  box.checked = todo.complete;
  label.htmlFor = box.id; // so the checkbox's accessible name is the to-do's text
  label.textContent = todo.text;
  row.classList.toggle("done", todo.complete);
  edit.setAttribute("aria-label", `Edit: ${todo.text}`);
  remove.setAttribute("aria-label", `Delete: ${todo.text}`);
  box.addEventListener("change", () => run(() => todoChange(todo, () => setComplete(todo, row, box))));
  edit.addEventListener("click", () => run(() => editTodo(todo, row)));
  remove.addEventListener("click", () => run(() => todoChange(todo, () => deleteTodo(todo))));
  return row;
}

// A 412 on a to-do: someone else changed it since this page read it. Say so and show it anew.
async function todoChange(todo, change) {
  try {
    await change();
  } catch (error) {
    if (error.status !== 412) throw error;
    await loadTodos();
    show(`Someone else changed “${todo.text}” meanwhile; the list now shows its new version. Try again if you still want to.`, true);
  }
}

async function setComplete(todo, row, box) {
  try {
    const { data } = await api("PATCH", `todo/${todo.id}`, { complete: box.checked });
    todo.complete = data.todo.complete;
    row.classList.toggle("done", todo.complete);
  } catch (error) {
    box.checked = todo.complete;
    throw error;
  }
}

async function deleteTodo(todo) {
  await api("DELETE", `todo/${todo.id}`);
  await loadTodos();
  show(`Deleted “${todo.text}”.`);
  $("new-todo").focus();
}

// Editing reads the to-do first: the text to start from, and the ETag the save sends as If-Match.
// On a 412 the row shows the other version and the field keeps the person's text.
async function editTodo(todo, row, draft) {
  const { data } = await api("GET", `todo/${todo.id}`);
  const fresh = todoRow(data.todo);
  row.replaceWith(fresh);
  inlineForm(fresh, "New text", { value: draft ?? data.todo.text }, async (text) => {
    try {
      const { data: saved } = await api("PATCH", `todo/${todo.id}`, { text });
      const done = todoRow(saved.todo);
      fresh.replaceWith(done);
      done.querySelector("button").focus();
      show("Saved.");
    } catch (error) {
      if (error.status !== 412) throw error;
      await editTodo(data.todo, fresh, text);
      show("Someone else changed this to-do meanwhile: its new version is shown. Save again to replace it with your text.", true);
    }
  });
}

// -- accounts (admins) -------------------------------------------------------------

async function loadAccounts() {
  const { data, response } = await api("GET", "user?limit=1000");
  $("account-list").replaceChildren(...data.users.map(accountRow));
  $("more-accounts").hidden = !hasNext(response);
}

function accountRow(user) {
  const row = fromTemplate("account-row");
  const [name, badge] = row.querySelectorAll("span");
  const [rename, role, reset, remove] = row.querySelectorAll("button");
  name.textContent = user.name;
  badge.textContent = user.admin ? "admin" : "";
  role.textContent = user.admin ? "Remove admin" : "Make admin";
  for (const button of [rename, role, reset, remove]) button.setAttribute("aria-label", `${button.textContent}: ${user.name}`);
  const path = `user/${user.public_id}`;
  const change = (body, said) => accountChange(user, async () => {
    await api("PATCH", path, body);
    await loadAccounts();
    show(said);
    if (user.public_id === state.me.public_id) await enter(); // my own name or rights changed
  });
  rename.addEventListener("click", () =>
    inlineForm(row, "New name", { value: user.name }, (value) => change({ name: value }, `Renamed ${user.name} to ${value}.`)),
  );
  role.addEventListener("click", () =>
    run(() => change({ admin: !user.admin }, `${user.name} is ${user.admin ? "no longer an admin" : "now an admin"}.`)),
  );
  reset.addEventListener("click", () =>
    inlineForm(row, "New password", { type: "password", autocomplete: "new-password" }, (value) =>
      change({ password: value }, `The password of ${user.name} is reset; their sessions have ended.`),
    ),
  );
  remove.addEventListener("click", () => {
    if (!confirm(`Delete the account ${user.name} and all its to-dos?`)) return;
    run(() => accountChange(user, async () => {
      await api("DELETE", path);
      await loadAccounts();
      show(`Deleted the account ${user.name}.`);
    }));
  });
  return row;
}

async function accountChange(user, change) {
  try {
    await change();
  } catch (error) {
    if (error.status !== 412) throw error;
    await loadAccounts();
    show(`Someone else changed the account ${user.name} meanwhile; the list now shows it anew. Try again if you still want to.`, true);
  }
}

// -- the forms, and the start --------------------------------------------------------

function onSubmit(id, action) {
  $(id).addEventListener("submit", (event) => {
    event.preventDefault();
    run(action);
  });
}

onSubmit("sign-in-form", async () => {
  await signIn($("name").value, $("password").value);
  $("password").value = "";
  show("");
  await enter();
  $("new-todo").focus();
});

onSubmit("add-form", async () => {
  const { data } = await api("POST", "todo", { text: $("new-todo").value });
  $("new-todo").value = "";
  await loadTodos();
  show(`Added “${data.todo.text}”.`);
});

onSubmit("account-form", async () => {
  const name = $("new-account").value;
  await api("POST", "user", { name, password: $("new-account-password").value });
  $("account-form").reset();
  await loadAccounts();
  show(`Created the account ${name}.`);
  $("new-account").focus();
});

// A password change ends every session of the account (API.md), this one too: the client
// signs in again with the new password, and failing that returns to the sign-in form.
onSubmit("password-form", async () => {
  const name = state.me.name;
  const password = $("new-password").value;
  await api("PUT", "me/password", { old_password: $("old-password").value, new_password: password });
  $("password-form").reset();
  dropTokens();
  try {
    await signIn(name, password);
    await enter();
  } catch {
    endSession("Your password is changed. Please sign in with the new one.");
    return;
  }
  show("Your password is changed; your other sessions have ended.");
});

$("sign-out").addEventListener("click", () =>
  run(async () => {
    try {
      await api("POST", "logout");
    } finally {
      endSession("Signed out.");
    }
  }),
);

for (const [id, step] of [["previous", -PAGE], ["next", PAGE]]) {
  $(id).addEventListener("click", () =>
    run(async () => {
      state.offset = Math.max(0, state.offset + step);
      await loadTodos();
      if ($(id).disabled) $(id === "next" ? "previous" : "next").focus(); // keep the keyboard's place
    }),
  );
}

// On load: a refresh token in this tab's sessionStorage means a session to resume.
run(async () => {
  screen(false);
  show("");
  if (sessionStorage.getItem(REFRESH_KEY) && (await refresh())) await enter();
  else $("name").focus();
});
