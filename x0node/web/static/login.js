// First visit (no password yet): setup form with the one-time code. Later: the sign-in form.
import { authState, post } from "./api.js";

const msg = document.getElementById("message");
const show = (text, ok = false) => { msg.textContent = text; msg.className = ok ? "message ok" : "message"; };

function explain(err) {
  if (err.status === 429) return `Too many failed attempts. Try again in ${err.retryAfter || "a few"} seconds.`;
  return err.message;
}

async function main() {
  const st = await authState();
  if (st.authenticated) { location.replace("/"); return; }
  const setup = document.getElementById("setup-form");
  const login = document.getElementById("login-form");
  if (!st.password_set) {
    setup.hidden = false;
    document.title = "x0node – first-time setup";
    document.getElementById("setup-code").focus();
  } else {
    login.hidden = false;
    document.getElementById("login-password").focus();
  }
  setup.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const code = document.getElementById("setup-code").value.trim();
    const pw = document.getElementById("setup-password").value;
    const pw2 = document.getElementById("setup-password2").value;
    if (pw !== pw2) { show("The two passwords differ."); return; }
    try {
      await post("/api/v1/auth/setup", { setup_code: code, password: pw });
      show("Password set.", true);
      location.replace("/");
    } catch (err) { show(explain(err)); }
  });
  login.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      await post("/api/v1/auth/login", { password: document.getElementById("login-password").value });
      location.replace("/");
    } catch (err) { show(explain(err)); }
  });
}

main().catch((err) => show(`Cannot reach the node: ${err.message}`));
