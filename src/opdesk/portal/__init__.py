"""The patient's own pages: what a signed-in patient may see and do for their family."""
