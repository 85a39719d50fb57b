from voucherd.cli import app

app()
