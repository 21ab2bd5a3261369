class Plugin:
    tools = {"x": {"handler": "x"}}

    def x(self):
        return {}
