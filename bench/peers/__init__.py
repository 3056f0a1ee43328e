"""Reference servers (peers) that tidemq is compared with: started from published artifacts, never vendored."""
