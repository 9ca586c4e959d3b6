// The print button (no inline script on these pages).
"use strict";
document.getElementById("print").addEventListener("click", () => window.print());
