// Placeholder web app (the real one replaces this file): hello, join, show lines.
"use strict";
const lines = document.getElementById("lines");
const show = (text) => {
  const li = document.createElement("li");
  li.textContent = text;
  lines.appendChild(li);
};
const scheme = location.protocol === "https:" ? "wss:" : "ws:";
const ws = new WebSocket(`${scheme}//${location.host}/ws`);
const nick = "web" + Math.floor(Math.random() * 10000);
ws.onopen = () => ws.send(JSON.stringify({ type: "hello", protocol: 1, nick }));
ws.onmessage = (event) => {
  const frame = JSON.parse(event.data);
  if (frame.type === "ping") ws.send(JSON.stringify({ type: "pong" }));
  show(event.data);
};
ws.onclose = () => show("disconnected");
document.getElementById("send").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = document.getElementById("text");
  ws.send(JSON.stringify({ type: "say", room: "lobby", text: input.value }));
  input.value = "";
});
