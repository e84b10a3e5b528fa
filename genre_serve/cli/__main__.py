"""`python -m genre_serve.cli`: the genre-serve command."""

from genre_serve.cli import main

raise SystemExit(main())
