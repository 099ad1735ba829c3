"""What the HTML pages and the JSON API share: middleware, errors, templates, dependencies."""
