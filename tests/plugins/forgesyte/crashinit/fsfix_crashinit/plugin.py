class Plugin:
    tools = {"never": {"handler": "never"}}

    def never(self):
        return {}
