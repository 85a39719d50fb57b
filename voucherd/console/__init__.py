"""The operators' web console (mounted at /console): sign-in, roles, the till, lookups,
campaigns, overview. Server-rendered with Jinja2 and htmx (shipped in static/, no CDN, no
build step); every page calls the same core services as the APIs and holds no rule."""
