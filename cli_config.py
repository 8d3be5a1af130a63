"""`sipprobe --config FILE`: the commands' options from a TOML file (docs/configuration.md).

Keys are the long option names without the dashes (`proxy`, `missed-local-replies`, `db`).
Top-level keys apply to every command that has the option; a table named after a command
(`[replay]`, `[sniff]`, `[report]`, `[report.acc]`) applies to it and, for a group, to its
subcommands; the more specific table wins, and the command line wins over the file. The
result is click's `default_map`, so options added to any command later need no change here.
Commands are read by duck typing (`commands`, `params`): typer 0.28 runs its own copy of click
(typer._click), whose classes are not click's.
"""
from __future__ import annotations

import tomllib


class ConfigError(Exception):
    """The file cannot be used: unreadable, not TOML, or a key no command knows."""


def _subcommands(command) -> dict:
    return getattr(command, "commands", None) or {}


def option_keys(command) -> dict:
    """The command's options by long name without dashes (`missed-local-replies`)."""
    keys = {}
    for param in command.params:
        if param.param_type_name == "option" and not getattr(param, "hidden", False):
            for opt in param.opts:
                if opt.startswith("--"):
                    keys[opt[2:]] = param
    return keys


def leaves(command, path: tuple = ()):
    """(path of command names, command) for every command that runs (not the groups)."""
    if _subcommands(command):
        for name, sub in _subcommands(command).items():
            yield from leaves(sub, path + (name,))
    else:
        yield path, command


def _known_under(command) -> set[str]:
    """The option keys a table for `command` may hold: its own, or any of its subcommands'."""
    return {key for _, leaf in leaves(command) for key in option_keys(leaf)}


def _check(table: dict, command, where: str, path: str) -> None:
    known = _known_under(command)
    subs = _subcommands(command)
    for key, value in table.items():
        if key in subs:
            if not isinstance(value, dict):
                raise ConfigError(f"{path}: [{where + key}] must be a table of options, "
                                  f"not {key} = {value!r}")
            _check(value, subs[key], f"{where}{key}.", path)
        elif key not in known:
            if where:
                raise ConfigError(f"{path}: unknown key {key!r} in [{where[:-1]}]: `sipprobe "
                                  f"{where[:-1].replace('.', ' ')}` has no option --{key}")
            raise ConfigError(f"{path}: unknown key {key!r} at the top level: no command has "
                              f"an option --{key}")


def load(path: str) -> dict:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"cannot read the config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None


def default_map(path: str, root) -> dict:
    """click's default_map for `root` from the TOML file at `path`: {param name: value} per
    command, nested by command name. Raises ConfigError."""
    data = load(path)
    _check(data, root, "", path)
    result: dict = {}
    for names, leaf in leaves(root):
        options = option_keys(leaf)
        values = {}
        table = data
        for depth in range(len(names) + 1):  # top level first, the command's own table last
            for key, value in table.items():
                param = options.get(key)
                if param is not None and not isinstance(value, dict):
                    if param.multiple and not isinstance(value, list):
                        value = [value]  # proxy = "10.0.0.1" as well as ["10.0.0.1"]
                    values[param.name] = value
            if depth == len(names):
                break
            table = table.get(names[depth], {})
        if values:
            node = result
            for name in names[:-1]:
                node = node.setdefault(name, {})
            node[names[-1]] = values
    return result
