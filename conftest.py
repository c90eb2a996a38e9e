# pytester drives real pytest sessions in the plugin's own tests.
pytest_plugins = ["pytester"]
