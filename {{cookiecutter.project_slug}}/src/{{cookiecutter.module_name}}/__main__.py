"""`python -m {{ cookiecutter.module_name }}` is the same CLI as `{{ cookiecutter.project_slug }}`."""

from {{ cookiecutter.module_name }}.cli import main

raise SystemExit(main())
