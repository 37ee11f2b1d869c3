//! WebRTC test client (WHIP/WHEP) without a browser.
