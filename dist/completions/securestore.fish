# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_securestore_global_optspecs
    string join \n socket= project= token-file= daemon-uid= service= timeout= h/help V/version
end

function __fish_securestore_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_securestore_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_securestore_using_subcommand
    set -l cmd (__fish_securestore_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c securestore -n "__fish_securestore_needs_command" -l socket -d 'The daemon\'s socket [default: $XDG_RUNTIME_DIR/securestore/securestored.sock]' -r -F
complete -c securestore -n "__fish_securestore_needs_command" -l project -d 'The project whose storage to use, e.g. @owner/slug' -r
complete -c securestore -n "__fish_securestore_needs_command" -l token-file -d 'File holding the project\'s access token (needed once the project is registered). Tokens are never taken on the command line, where other processes could see them' -r -F
complete -c securestore -n "__fish_securestore_needs_command" -l daemon-uid -d 'The uid the daemon must run as [default: this user\'s uid]. Root is always accepted. Before sending anything, the tool asks the kernel who is listening on the socket and refuses anyone else (exit 3): name a system-wide daemon\'s dedicated uid here' -r
complete -c securestore -n "__fish_securestore_needs_command" -l service -d 'The keychainService namespace inside the project [default: app]' -r
complete -c securestore -n "__fish_securestore_needs_command" -l timeout -d 'Seconds to wait for the daemon' -r
complete -c securestore -n "__fish_securestore_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c securestore -n "__fish_securestore_needs_command" -s V -l version -d 'Print version'
complete -c securestore -n "__fish_securestore_needs_command" -f -a "set" -d 'Store VALUE under KEY. Without VALUE, reads it from stdin (one trailing newline is dropped)'
complete -c securestore -n "__fish_securestore_needs_command" -f -a "get" -d 'Print the value under KEY and a newline; exit 1 if there is none'
complete -c securestore -n "__fish_securestore_needs_command" -f -a "delete" -d 'Delete the item under KEY (deleting a missing item succeeds)'
complete -c securestore -n "__fish_securestore_needs_command" -f -a "contains" -d 'Exit 0 if an item is stored under KEY, 1 if not; prints nothing. The value is never sent'
complete -c securestore -n "__fish_securestore_needs_command" -f -a "list" -d 'Print the keys of --service, sorted, one per line (or, with --services, the services that hold items)'
complete -c securestore -n "__fish_securestore_needs_command" -f -a "watch" -d 'Print one line per change of the project as it becomes durable, in commit order, until interrupted: `SEQ set|delete|clear SERVICE KEY` (`*` for all), or `lagged MISSED` when changes were dropped because this reader fell behind. Values are never printed. Without --service, every service is watched; with KEY, only that key'
complete -c securestore -n "__fish_securestore_needs_command" -f -a "export" -d 'Write a backup of the project\'s items (of --service, if given) to --output or stdout, sealed under a passphrase (Argon2id). Items of the *_THIS_DEVICE_ONLY classes are never exported. The passphrase is asked on the terminal (twice), or read from --passphrase-file'
complete -c securestore -n "__fish_securestore_needs_command" -f -a "import" -d 'Restore a backup (FILE, or stdin) into the project. The file is checked whole first: a wrong passphrase, a damaged file or a newer format imports nothing. Items that exist are kept unless --replace. Prints `added N replaced N skipped N`'
complete -c securestore -n "__fish_securestore_needs_command" -f -a "clear" -d 'Delete every item of --service (of every service with --all-services), and print how many there were. Needs --yes'
complete -c securestore -n "__fish_securestore_needs_command" -f -a "project" -d 'Manage the daemon\'s registered projects (as the daemon\'s own user or root)'
complete -c securestore -n "__fish_securestore_needs_command" -f -a "device" -d 'Signal or show the device state the accessibility classes depend on (as the daemon\'s own user or root). An embedding app signals from its lock callbacks; on a desktop, these do'
complete -c securestore -n "__fish_securestore_needs_command" -f -a "key" -d 'Manage the daemon\'s master key (as the daemon\'s own user or root)'
complete -c securestore -n "__fish_securestore_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c securestore -n "__fish_securestore_using_subcommand set" -l accessible -d 'When the item may be read: an Expo class such as WHEN_UNLOCKED or AFTER_FIRST_UNLOCK' -r
complete -c securestore -n "__fish_securestore_using_subcommand set" -l if-equals-file -d 'Store only if the current value equals this file\'s content (one trailing newline dropped; `-` is stdin, then VALUE must be given); otherwise exit 6 and change nothing. The expected value never appears on the command line' -r -F
complete -c securestore -n "__fish_securestore_using_subcommand set" -l socket -d 'The daemon\'s socket [default: $XDG_RUNTIME_DIR/securestore/securestored.sock]' -r -F
complete -c securestore -n "__fish_securestore_using_subcommand set" -l project -d 'The project whose storage to use, e.g. @owner/slug' -r
complete -c securestore -n "__fish_securestore_using_subcommand set" -l token-file -d 'File holding the project\'s access token (needed once the project is registered). Tokens are never taken on the command line, where other processes could see them' -r -F
complete -c securestore -n "__fish_securestore_using_subcommand set" -l daemon-uid -d 'The uid the daemon must run as [default: this user\'s uid]. Root is always accepted. Before sending anything, the tool asks the kernel who is listening on the socket and refuses anyone else (exit 3): name a system-wide daemon\'s dedicated uid here' -r
complete -c securestore -n "__fish_securestore_using_subcommand set" -l service -d 'The keychainService namespace inside the project [default: app]' -r
complete -c securestore -n "__fish_securestore_using_subcommand set" -l timeout -d 'Seconds to wait for the daemon' -r
complete -c securestore -n "__fish_securestore_using_subcommand set" -l if-absent -d 'Store only if there is no item under KEY yet; otherwise exit 6 and change nothing'
complete -c securestore -n "__fish_securestore_using_subcommand set" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c securestore -n "__fish_securestore_using_subcommand get" -l socket -d 'The daemon\'s socket [default: $XDG_RUNTIME_DIR/securestore/securestored.sock]' -r -F
complete -c securestore -n "__fish_securestore_using_subcommand get" -l project -d 'The project whose storage to use, e.g. @owner/slug' -r
complete -c securestore -n "__fish_securestore_using_subcommand get" -l token-file -d 'File holding the project\'s access token (needed once the project is registered). Tokens are never taken on the command line, where other processes could see them' -r -F
complete -c securestore -n "__fish_securestore_using_subcommand get" -l daemon-uid -d 'The uid the daemon must run as [default: this user\'s uid]. Root is always accepted. Before sending anything, the tool asks the kernel who is listening on the socket and refuses anyone else (exit 3): name a system-wide daemon\'s dedicated uid here' -r
complete -c securestore -n "__fish_securestore_using_subcommand get" -l service -d 'The keychainService namespace inside the project [default: app]' -r
complete -c securestore -n "__fish_securestore_using_subcommand get" -l timeout -d 'Seconds to wait for the daemon' -r
complete -c securestore -n "__fish_securestore_using_subcommand get" -l json -d 'Print one JSON object: key, service, value and accessible class'
complete -c securestore -n "__fish_securestore_using_subcommand get" -s h -l help -d 'Print help'
complete -c securestore -n "__fish_securestore_using_subcommand delete" -l if-equals-file -d 'Delete only if the current value equals this file\'s content (one trailing newline dropped; `-` is stdin); otherwise exit 6 and change nothing' -r -F
complete -c securestore -n "__fish_securestore_using_subcommand delete" -l socket -d 'The daemon\'s socket [default: $XDG_RUNTIME_DIR/securestore/securestored.sock]' -r -F
complete -c securestore -n "__fish_securestore_using_subcommand delete" -l project -d 'The project whose storage to use, e.g. @owner/slug' -r
complete -c securestore -n "__fish_securestore_using_subcommand delete" -l token-file -d 'File holding the project\'s access token (needed once the project is registered). Tokens are never taken on the command line, where other processes could see them' -r -F
complete -c securestore -n "__fish_securestore_using_subcommand delete" -l daemon-uid -d 'The uid the daemon must run as [default: this user\'s uid]. Root is always accepted. Before sending anything, the tool asks the kernel who is listening on the socket and refuses anyone else (exit 3): name a system-wide daemon\'s dedicated uid here' -r
complete -c securestore -n "__fish_securestore_using_subcommand delete" -l service -d 'The keychainService namespace inside the project [default: app]' -r
complete -c securestore -n "__fish_securestore_using_subcommand delete" -l timeout -d 'Seconds to wait for the daemon' -r
complete -c securestore -n "__fish_securestore_using_subcommand delete" -s h -l help -d 'Print help'
complete -c securestore -n "__fish_securestore_using_subcommand contains" -l socket -d 'The daemon\'s socket [default: $XDG_RUNTIME_DIR/securestore/securestored.sock]' -r -F
complete -c securestore -n "__fish_securestore_using_subcommand contains" -l project -d 'The project whose storage to use, e.g. @owner/slug' -r
complete -c securestore -n "__fish_securestore_using_subcommand contains" -l token-file -d 'File holding the project\'s access token (needed once the project is registered). Tokens are never taken on the command line, where other processes could see them' -r -F
complete -c securestore -n "__fish_securestore_using_subcommand contains" -l daemon-uid -d 'The uid the daemon must run as [default: this user\'s uid]. Root is always accepted. Before sending anything, the tool asks the kernel who is listening on the socket and refuses anyone else (exit 3): name a system-wide daemon\'s dedicated uid here' -r
complete -c securestore -n "__fish_securestore_using_subcommand contains" -l service -d 'The keychainService namespace inside the project [default: app]' -r
complete -c securestore -n "__fish_securestore_using_subcommand contains" -l timeout -d 'Seconds to wait for the daemon' -r
complete -c securestore -n "__fish_securestore_using_subcommand contains" -s h -l help -d 'Print help'
complete -c securestore -n "__fish_securestore_using_subcommand list" -l socket -d 'The daemon\'s socket [default: $XDG_RUNTIME_DIR/securestore/securestored.sock]' -r -F
complete -c securestore -n "__fish_securestore_using_subcommand list" -l project -d 'The project whose storage to use, e.g. @owner/slug' -r
complete -c securestore -n "__fish_securestore_using_subcommand list" -l token-file -d 'File holding the project\'s access token (needed once the project is registered). Tokens are never taken on the command line, where other processes could see them' -r -F
complete -c securestore -n "__fish_securestore_using_subcommand list" -l daemon-uid -d 'The uid the daemon must run as [default: this user\'s uid]. Root is always accepted. Before sending anything, the tool asks the kernel who is listening on the socket and refuses anyone else (exit 3): name a system-wide daemon\'s dedicated uid here' -r
complete -c securestore -n "__fish_securestore_using_subcommand list" -l service -d 'The keychainService namespace inside the project [default: app]' -r
complete -c securestore -n "__fish_securestore_using_subcommand list" -l timeout -d 'Seconds to wait for the daemon' -r
complete -c securestore -n "__fish_securestore_using_subcommand list" -l services -d 'List the services instead of the keys of one'
complete -c securestore -n "__fish_securestore_using_subcommand list" -l json -d 'Print one JSON array of strings'
complete -c securestore -n "__fish_securestore_using_subcommand list" -s h -l help -d 'Print help'
complete -c securestore -n "__fish_securestore_using_subcommand watch" -l socket -d 'The daemon\'s socket [default: $XDG_RUNTIME_DIR/securestore/securestored.sock]' -r -F
complete -c securestore -n "__fish_securestore_using_subcommand watch" -l project -d 'The project whose storage to use, e.g. @owner/slug' -r
complete -c securestore -n "__fish_securestore_using_subcommand watch" -l token-file -d 'File holding the project\'s access token (needed once the project is registered). Tokens are never taken on the command line, where other processes could see them' -r -F
complete -c securestore -n "__fish_securestore_using_subcommand watch" -l daemon-uid -d 'The uid the daemon must run as [default: this user\'s uid]. Root is always accepted. Before sending anything, the tool asks the kernel who is listening on the socket and refuses anyone else (exit 3): name a system-wide daemon\'s dedicated uid here' -r
complete -c securestore -n "__fish_securestore_using_subcommand watch" -l service -d 'The keychainService namespace inside the project [default: app]' -r
complete -c securestore -n "__fish_securestore_using_subcommand watch" -l timeout -d 'Seconds to wait for the daemon' -r
complete -c securestore -n "__fish_securestore_using_subcommand watch" -l json -d 'Print one JSON object per line'
complete -c securestore -n "__fish_securestore_using_subcommand watch" -s h -l help -d 'Print help'
complete -c securestore -n "__fish_securestore_using_subcommand export" -s o -l output -d 'Write the backup here (created 0600) instead of stdout' -r -F
complete -c securestore -n "__fish_securestore_using_subcommand export" -l passphrase-file -d 'File holding the passphrase (one trailing newline dropped)' -r -F
complete -c securestore -n "__fish_securestore_using_subcommand export" -l socket -d 'The daemon\'s socket [default: $XDG_RUNTIME_DIR/securestore/securestored.sock]' -r -F
complete -c securestore -n "__fish_securestore_using_subcommand export" -l project -d 'The project whose storage to use, e.g. @owner/slug' -r
complete -c securestore -n "__fish_securestore_using_subcommand export" -l token-file -d 'File holding the project\'s access token (needed once the project is registered). Tokens are never taken on the command line, where other processes could see them' -r -F
complete -c securestore -n "__fish_securestore_using_subcommand export" -l daemon-uid -d 'The uid the daemon must run as [default: this user\'s uid]. Root is always accepted. Before sending anything, the tool asks the kernel who is listening on the socket and refuses anyone else (exit 3): name a system-wide daemon\'s dedicated uid here' -r
complete -c securestore -n "__fish_securestore_using_subcommand export" -l service -d 'The keychainService namespace inside the project [default: app]' -r
complete -c securestore -n "__fish_securestore_using_subcommand export" -l timeout -d 'Seconds to wait for the daemon' -r
complete -c securestore -n "__fish_securestore_using_subcommand export" -s h -l help -d 'Print help'
complete -c securestore -n "__fish_securestore_using_subcommand import" -l passphrase-file -d 'File holding the passphrase (one trailing newline dropped)' -r -F
complete -c securestore -n "__fish_securestore_using_subcommand import" -l socket -d 'The daemon\'s socket [default: $XDG_RUNTIME_DIR/securestore/securestored.sock]' -r -F
complete -c securestore -n "__fish_securestore_using_subcommand import" -l project -d 'The project whose storage to use, e.g. @owner/slug' -r
complete -c securestore -n "__fish_securestore_using_subcommand import" -l token-file -d 'File holding the project\'s access token (needed once the project is registered). Tokens are never taken on the command line, where other processes could see them' -r -F
complete -c securestore -n "__fish_securestore_using_subcommand import" -l daemon-uid -d 'The uid the daemon must run as [default: this user\'s uid]. Root is always accepted. Before sending anything, the tool asks the kernel who is listening on the socket and refuses anyone else (exit 3): name a system-wide daemon\'s dedicated uid here' -r
complete -c securestore -n "__fish_securestore_using_subcommand import" -l service -d 'The keychainService namespace inside the project [default: app]' -r
complete -c securestore -n "__fish_securestore_using_subcommand import" -l timeout -d 'Seconds to wait for the daemon' -r
complete -c securestore -n "__fish_securestore_using_subcommand import" -l replace -d 'Overwrite items that exist (by default they are kept and counted as skipped)'
complete -c securestore -n "__fish_securestore_using_subcommand import" -s h -l help -d 'Print help'
complete -c securestore -n "__fish_securestore_using_subcommand clear" -l socket -d 'The daemon\'s socket [default: $XDG_RUNTIME_DIR/securestore/securestored.sock]' -r -F
complete -c securestore -n "__fish_securestore_using_subcommand clear" -l project -d 'The project whose storage to use, e.g. @owner/slug' -r
complete -c securestore -n "__fish_securestore_using_subcommand clear" -l token-file -d 'File holding the project\'s access token (needed once the project is registered). Tokens are never taken on the command line, where other processes could see them' -r -F
complete -c securestore -n "__fish_securestore_using_subcommand clear" -l daemon-uid -d 'The uid the daemon must run as [default: this user\'s uid]. Root is always accepted. Before sending anything, the tool asks the kernel who is listening on the socket and refuses anyone else (exit 3): name a system-wide daemon\'s dedicated uid here' -r
complete -c securestore -n "__fish_securestore_using_subcommand clear" -l service -d 'The keychainService namespace inside the project [default: app]' -r
complete -c securestore -n "__fish_securestore_using_subcommand clear" -l timeout -d 'Seconds to wait for the daemon' -r
complete -c securestore -n "__fish_securestore_using_subcommand clear" -l all-services -d 'Every service of the project, not only --service'
complete -c securestore -n "__fish_securestore_using_subcommand clear" -l yes -d 'Confirm: the items cannot be recovered'
complete -c securestore -n "__fish_securestore_using_subcommand clear" -s h -l help -d 'Print help'
complete -c securestore -n "__fish_securestore_using_subcommand project; and not __fish_seen_subcommand_from add remove list help" -l socket -d 'The daemon\'s socket [default: $XDG_RUNTIME_DIR/securestore/securestored.sock]' -r -F
complete -c securestore -n "__fish_securestore_using_subcommand project; and not __fish_seen_subcommand_from add remove list help" -l project -d 'The project whose storage to use, e.g. @owner/slug' -r
complete -c securestore -n "__fish_securestore_using_subcommand project; and not __fish_seen_subcommand_from add remove list help" -l token-file -d 'File holding the project\'s access token (needed once the project is registered). Tokens are never taken on the command line, where other processes could see them' -r -F
complete -c securestore -n "__fish_securestore_using_subcommand project; and not __fish_seen_subcommand_from add remove list help" -l daemon-uid -d 'The uid the daemon must run as [default: this user\'s uid]. Root is always accepted. Before sending anything, the tool asks the kernel who is listening on the socket and refuses anyone else (exit 3): name a system-wide daemon\'s dedicated uid here' -r
complete -c securestore -n "__fish_securestore_using_subcommand project; and not __fish_seen_subcommand_from add remove list help" -l service -d 'The keychainService namespace inside the project [default: app]' -r
complete -c securestore -n "__fish_securestore_using_subcommand project; and not __fish_seen_subcommand_from add remove list help" -l timeout -d 'Seconds to wait for the daemon' -r
complete -c securestore -n "__fish_securestore_using_subcommand project; and not __fish_seen_subcommand_from add remove list help" -s h -l help -d 'Print help'
complete -c securestore -n "__fish_securestore_using_subcommand project; and not __fish_seen_subcommand_from add remove list help" -f -a "add" -d 'Register project ID and print its new access token, once. Save it to a 0600 file'
complete -c securestore -n "__fish_securestore_using_subcommand project; and not __fish_seen_subcommand_from add remove list help" -f -a "remove" -d 'Unregister project ID and delete all of its items (needs the project\'s --token-file if it is registered). Run it again to finish a removal that was interrupted'
complete -c securestore -n "__fish_securestore_using_subcommand project; and not __fish_seen_subcommand_from add remove list help" -f -a "list" -d 'Print the registered project ids, one per line'
complete -c securestore -n "__fish_securestore_using_subcommand project; and not __fish_seen_subcommand_from add remove list help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c securestore -n "__fish_securestore_using_subcommand project; and __fish_seen_subcommand_from add" -l socket -d 'The daemon\'s socket [default: $XDG_RUNTIME_DIR/securestore/securestored.sock]' -r -F
complete -c securestore -n "__fish_securestore_using_subcommand project; and __fish_seen_subcommand_from add" -l project -d 'The project whose storage to use, e.g. @owner/slug' -r
complete -c securestore -n "__fish_securestore_using_subcommand project; and __fish_seen_subcommand_from add" -l token-file -d 'File holding the project\'s access token (needed once the project is registered). Tokens are never taken on the command line, where other processes could see them' -r -F
complete -c securestore -n "__fish_securestore_using_subcommand project; and __fish_seen_subcommand_from add" -l daemon-uid -d 'The uid the daemon must run as [default: this user\'s uid]. Root is always accepted. Before sending anything, the tool asks the kernel who is listening on the socket and refuses anyone else (exit 3): name a system-wide daemon\'s dedicated uid here' -r
complete -c securestore -n "__fish_securestore_using_subcommand project; and __fish_seen_subcommand_from add" -l service -d 'The keychainService namespace inside the project [default: app]' -r
complete -c securestore -n "__fish_securestore_using_subcommand project; and __fish_seen_subcommand_from add" -l timeout -d 'Seconds to wait for the daemon' -r
complete -c securestore -n "__fish_securestore_using_subcommand project; and __fish_seen_subcommand_from add" -l replace -d 'If ID is registered already (the token from the first add was lost), revoke its token and print a new one. Its items are kept unless --wipe is given'
complete -c securestore -n "__fish_securestore_using_subcommand project; and __fish_seen_subcommand_from add" -l wipe -d 'With --replace: delete the project\'s items too'
complete -c securestore -n "__fish_securestore_using_subcommand project; and __fish_seen_subcommand_from add" -s h -l help -d 'Print help'
complete -c securestore -n "__fish_securestore_using_subcommand project; and __fish_seen_subcommand_from remove" -l socket -d 'The daemon\'s socket [default: $XDG_RUNTIME_DIR/securestore/securestored.sock]' -r -F
complete -c securestore -n "__fish_securestore_using_subcommand project; and __fish_seen_subcommand_from remove" -l project -d 'The project whose storage to use, e.g. @owner/slug' -r
complete -c securestore -n "__fish_securestore_using_subcommand project; and __fish_seen_subcommand_from remove" -l token-file -d 'File holding the project\'s access token (needed once the project is registered). Tokens are never taken on the command line, where other processes could see them' -r -F
complete -c securestore -n "__fish_securestore_using_subcommand project; and __fish_seen_subcommand_from remove" -l daemon-uid -d 'The uid the daemon must run as [default: this user\'s uid]. Root is always accepted. Before sending anything, the tool asks the kernel who is listening on the socket and refuses anyone else (exit 3): name a system-wide daemon\'s dedicated uid here' -r
complete -c securestore -n "__fish_securestore_using_subcommand project; and __fish_seen_subcommand_from remove" -l service -d 'The keychainService namespace inside the project [default: app]' -r
complete -c securestore -n "__fish_securestore_using_subcommand project; and __fish_seen_subcommand_from remove" -l timeout -d 'Seconds to wait for the daemon' -r
complete -c securestore -n "__fish_securestore_using_subcommand project; and __fish_seen_subcommand_from remove" -s h -l help -d 'Print help'
complete -c securestore -n "__fish_securestore_using_subcommand project; and __fish_seen_subcommand_from list" -l socket -d 'The daemon\'s socket [default: $XDG_RUNTIME_DIR/securestore/securestored.sock]' -r -F
complete -c securestore -n "__fish_securestore_using_subcommand project; and __fish_seen_subcommand_from list" -l project -d 'The project whose storage to use, e.g. @owner/slug' -r
complete -c securestore -n "__fish_securestore_using_subcommand project; and __fish_seen_subcommand_from list" -l token-file -d 'File holding the project\'s access token (needed once the project is registered). Tokens are never taken on the command line, where other processes could see them' -r -F
complete -c securestore -n "__fish_securestore_using_subcommand project; and __fish_seen_subcommand_from list" -l daemon-uid -d 'The uid the daemon must run as [default: this user\'s uid]. Root is always accepted. Before sending anything, the tool asks the kernel who is listening on the socket and refuses anyone else (exit 3): name a system-wide daemon\'s dedicated uid here' -r
complete -c securestore -n "__fish_securestore_using_subcommand project; and __fish_seen_subcommand_from list" -l service -d 'The keychainService namespace inside the project [default: app]' -r
complete -c securestore -n "__fish_securestore_using_subcommand project; and __fish_seen_subcommand_from list" -l timeout -d 'Seconds to wait for the daemon' -r
complete -c securestore -n "__fish_securestore_using_subcommand project; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c securestore -n "__fish_securestore_using_subcommand project; and __fish_seen_subcommand_from help" -f -a "add" -d 'Register project ID and print its new access token, once. Save it to a 0600 file'
complete -c securestore -n "__fish_securestore_using_subcommand project; and __fish_seen_subcommand_from help" -f -a "remove" -d 'Unregister project ID and delete all of its items (needs the project\'s --token-file if it is registered). Run it again to finish a removal that was interrupted'
complete -c securestore -n "__fish_securestore_using_subcommand project; and __fish_seen_subcommand_from help" -f -a "list" -d 'Print the registered project ids, one per line'
complete -c securestore -n "__fish_securestore_using_subcommand project; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c securestore -n "__fish_securestore_using_subcommand device; and not __fish_seen_subcommand_from status lock unlock passcode help" -l socket -d 'The daemon\'s socket [default: $XDG_RUNTIME_DIR/securestore/securestored.sock]' -r -F
complete -c securestore -n "__fish_securestore_using_subcommand device; and not __fish_seen_subcommand_from status lock unlock passcode help" -l project -d 'The project whose storage to use, e.g. @owner/slug' -r
complete -c securestore -n "__fish_securestore_using_subcommand device; and not __fish_seen_subcommand_from status lock unlock passcode help" -l token-file -d 'File holding the project\'s access token (needed once the project is registered). Tokens are never taken on the command line, where other processes could see them' -r -F
complete -c securestore -n "__fish_securestore_using_subcommand device; and not __fish_seen_subcommand_from status lock unlock passcode help" -l daemon-uid -d 'The uid the daemon must run as [default: this user\'s uid]. Root is always accepted. Before sending anything, the tool asks the kernel who is listening on the socket and refuses anyone else (exit 3): name a system-wide daemon\'s dedicated uid here' -r
complete -c securestore -n "__fish_securestore_using_subcommand device; and not __fish_seen_subcommand_from status lock unlock passcode help" -l service -d 'The keychainService namespace inside the project [default: app]' -r
complete -c securestore -n "__fish_securestore_using_subcommand device; and not __fish_seen_subcommand_from status lock unlock passcode help" -l timeout -d 'Seconds to wait for the daemon' -r
complete -c securestore -n "__fish_securestore_using_subcommand device; and not __fish_seen_subcommand_from status lock unlock passcode help" -s h -l help -d 'Print help'
complete -c securestore -n "__fish_securestore_using_subcommand device; and not __fish_seen_subcommand_from status lock unlock passcode help" -f -a "status" -d 'Print the device state, e.g. `unlocked, passcode set`'
complete -c securestore -n "__fish_securestore_using_subcommand device; and not __fish_seen_subcommand_from status lock unlock passcode help" -f -a "lock" -d 'The device locked: WHEN_UNLOCKED* items become unavailable and their key is wiped from memory'
complete -c securestore -n "__fish_securestore_using_subcommand device; and not __fish_seen_subcommand_from status lock unlock passcode help" -f -a "unlock" -d 'The device unlocked. With --secret-file, the host\'s unlock secret: the first one given binds the keys of the classes that need an unlocked device, and every later unlock must give it'
complete -c securestore -n "__fish_securestore_using_subcommand device; and not __fish_seen_subcommand_from status lock unlock passcode help" -f -a "passcode" -d 'The passcode was set or removed. Removing it deletes every WHEN_PASSCODE_SET_THIS_DEVICE_ONLY item, durably'
complete -c securestore -n "__fish_securestore_using_subcommand device; and not __fish_seen_subcommand_from status lock unlock passcode help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c securestore -n "__fish_securestore_using_subcommand device; and __fish_seen_subcommand_from status" -l socket -d 'The daemon\'s socket [default: $XDG_RUNTIME_DIR/securestore/securestored.sock]' -r -F
complete -c securestore -n "__fish_securestore_using_subcommand device; and __fish_seen_subcommand_from status" -l project -d 'The project whose storage to use, e.g. @owner/slug' -r
complete -c securestore -n "__fish_securestore_using_subcommand device; and __fish_seen_subcommand_from status" -l token-file -d 'File holding the project\'s access token (needed once the project is registered). Tokens are never taken on the command line, where other processes could see them' -r -F
complete -c securestore -n "__fish_securestore_using_subcommand device; and __fish_seen_subcommand_from status" -l daemon-uid -d 'The uid the daemon must run as [default: this user\'s uid]. Root is always accepted. Before sending anything, the tool asks the kernel who is listening on the socket and refuses anyone else (exit 3): name a system-wide daemon\'s dedicated uid here' -r
complete -c securestore -n "__fish_securestore_using_subcommand device; and __fish_seen_subcommand_from status" -l service -d 'The keychainService namespace inside the project [default: app]' -r
complete -c securestore -n "__fish_securestore_using_subcommand device; and __fish_seen_subcommand_from status" -l timeout -d 'Seconds to wait for the daemon' -r
complete -c securestore -n "__fish_securestore_using_subcommand device; and __fish_seen_subcommand_from status" -s h -l help -d 'Print help'
complete -c securestore -n "__fish_securestore_using_subcommand device; and __fish_seen_subcommand_from lock" -l socket -d 'The daemon\'s socket [default: $XDG_RUNTIME_DIR/securestore/securestored.sock]' -r -F
complete -c securestore -n "__fish_securestore_using_subcommand device; and __fish_seen_subcommand_from lock" -l project -d 'The project whose storage to use, e.g. @owner/slug' -r
complete -c securestore -n "__fish_securestore_using_subcommand device; and __fish_seen_subcommand_from lock" -l token-file -d 'File holding the project\'s access token (needed once the project is registered). Tokens are never taken on the command line, where other processes could see them' -r -F
complete -c securestore -n "__fish_securestore_using_subcommand device; and __fish_seen_subcommand_from lock" -l daemon-uid -d 'The uid the daemon must run as [default: this user\'s uid]. Root is always accepted. Before sending anything, the tool asks the kernel who is listening on the socket and refuses anyone else (exit 3): name a system-wide daemon\'s dedicated uid here' -r
complete -c securestore -n "__fish_securestore_using_subcommand device; and __fish_seen_subcommand_from lock" -l service -d 'The keychainService namespace inside the project [default: app]' -r
complete -c securestore -n "__fish_securestore_using_subcommand device; and __fish_seen_subcommand_from lock" -l timeout -d 'Seconds to wait for the daemon' -r
complete -c securestore -n "__fish_securestore_using_subcommand device; and __fish_seen_subcommand_from lock" -s h -l help -d 'Print help'
complete -c securestore -n "__fish_securestore_using_subcommand device; and __fish_seen_subcommand_from unlock" -l secret-file -d 'File holding the unlock secret (one trailing newline dropped)' -r -F
complete -c securestore -n "__fish_securestore_using_subcommand device; and __fish_seen_subcommand_from unlock" -l socket -d 'The daemon\'s socket [default: $XDG_RUNTIME_DIR/securestore/securestored.sock]' -r -F
complete -c securestore -n "__fish_securestore_using_subcommand device; and __fish_seen_subcommand_from unlock" -l project -d 'The project whose storage to use, e.g. @owner/slug' -r
complete -c securestore -n "__fish_securestore_using_subcommand device; and __fish_seen_subcommand_from unlock" -l token-file -d 'File holding the project\'s access token (needed once the project is registered). Tokens are never taken on the command line, where other processes could see them' -r -F
complete -c securestore -n "__fish_securestore_using_subcommand device; and __fish_seen_subcommand_from unlock" -l daemon-uid -d 'The uid the daemon must run as [default: this user\'s uid]. Root is always accepted. Before sending anything, the tool asks the kernel who is listening on the socket and refuses anyone else (exit 3): name a system-wide daemon\'s dedicated uid here' -r
complete -c securestore -n "__fish_securestore_using_subcommand device; and __fish_seen_subcommand_from unlock" -l service -d 'The keychainService namespace inside the project [default: app]' -r
complete -c securestore -n "__fish_securestore_using_subcommand device; and __fish_seen_subcommand_from unlock" -l timeout -d 'Seconds to wait for the daemon' -r
complete -c securestore -n "__fish_securestore_using_subcommand device; and __fish_seen_subcommand_from unlock" -s h -l help -d 'Print help'
complete -c securestore -n "__fish_securestore_using_subcommand device; and __fish_seen_subcommand_from passcode" -l socket -d 'The daemon\'s socket [default: $XDG_RUNTIME_DIR/securestore/securestored.sock]' -r -F
complete -c securestore -n "__fish_securestore_using_subcommand device; and __fish_seen_subcommand_from passcode" -l project -d 'The project whose storage to use, e.g. @owner/slug' -r
complete -c securestore -n "__fish_securestore_using_subcommand device; and __fish_seen_subcommand_from passcode" -l token-file -d 'File holding the project\'s access token (needed once the project is registered). Tokens are never taken on the command line, where other processes could see them' -r -F
complete -c securestore -n "__fish_securestore_using_subcommand device; and __fish_seen_subcommand_from passcode" -l daemon-uid -d 'The uid the daemon must run as [default: this user\'s uid]. Root is always accepted. Before sending anything, the tool asks the kernel who is listening on the socket and refuses anyone else (exit 3): name a system-wide daemon\'s dedicated uid here' -r
complete -c securestore -n "__fish_securestore_using_subcommand device; and __fish_seen_subcommand_from passcode" -l service -d 'The keychainService namespace inside the project [default: app]' -r
complete -c securestore -n "__fish_securestore_using_subcommand device; and __fish_seen_subcommand_from passcode" -l timeout -d 'Seconds to wait for the daemon' -r
complete -c securestore -n "__fish_securestore_using_subcommand device; and __fish_seen_subcommand_from passcode" -s h -l help -d 'Print help'
complete -c securestore -n "__fish_securestore_using_subcommand device; and __fish_seen_subcommand_from help" -f -a "status" -d 'Print the device state, e.g. `unlocked, passcode set`'
complete -c securestore -n "__fish_securestore_using_subcommand device; and __fish_seen_subcommand_from help" -f -a "lock" -d 'The device locked: WHEN_UNLOCKED* items become unavailable and their key is wiped from memory'
complete -c securestore -n "__fish_securestore_using_subcommand device; and __fish_seen_subcommand_from help" -f -a "unlock" -d 'The device unlocked. With --secret-file, the host\'s unlock secret: the first one given binds the keys of the classes that need an unlocked device, and every later unlock must give it'
complete -c securestore -n "__fish_securestore_using_subcommand device; and __fish_seen_subcommand_from help" -f -a "passcode" -d 'The passcode was set or removed. Removing it deletes every WHEN_PASSCODE_SET_THIS_DEVICE_ONLY item, durably'
complete -c securestore -n "__fish_securestore_using_subcommand device; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c securestore -n "__fish_securestore_using_subcommand key; and not __fish_seen_subcommand_from rotate help" -l socket -d 'The daemon\'s socket [default: $XDG_RUNTIME_DIR/securestore/securestored.sock]' -r -F
complete -c securestore -n "__fish_securestore_using_subcommand key; and not __fish_seen_subcommand_from rotate help" -l project -d 'The project whose storage to use, e.g. @owner/slug' -r
complete -c securestore -n "__fish_securestore_using_subcommand key; and not __fish_seen_subcommand_from rotate help" -l token-file -d 'File holding the project\'s access token (needed once the project is registered). Tokens are never taken on the command line, where other processes could see them' -r -F
complete -c securestore -n "__fish_securestore_using_subcommand key; and not __fish_seen_subcommand_from rotate help" -l daemon-uid -d 'The uid the daemon must run as [default: this user\'s uid]. Root is always accepted. Before sending anything, the tool asks the kernel who is listening on the socket and refuses anyone else (exit 3): name a system-wide daemon\'s dedicated uid here' -r
complete -c securestore -n "__fish_securestore_using_subcommand key; and not __fish_seen_subcommand_from rotate help" -l service -d 'The keychainService namespace inside the project [default: app]' -r
complete -c securestore -n "__fish_securestore_using_subcommand key; and not __fish_seen_subcommand_from rotate help" -l timeout -d 'Seconds to wait for the daemon' -r
complete -c securestore -n "__fish_securestore_using_subcommand key; and not __fish_seen_subcommand_from rotate help" -s h -l help -d 'Print help'
complete -c securestore -n "__fish_securestore_using_subcommand key; and not __fish_seen_subcommand_from rotate help" -f -a "rotate" -d 'Replace the master key: the data keys are wrapped again under a new key and the old key file is overwritten; crash-safe at every step'
complete -c securestore -n "__fish_securestore_using_subcommand key; and not __fish_seen_subcommand_from rotate help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c securestore -n "__fish_securestore_using_subcommand key; and __fish_seen_subcommand_from rotate" -l socket -d 'The daemon\'s socket [default: $XDG_RUNTIME_DIR/securestore/securestored.sock]' -r -F
complete -c securestore -n "__fish_securestore_using_subcommand key; and __fish_seen_subcommand_from rotate" -l project -d 'The project whose storage to use, e.g. @owner/slug' -r
complete -c securestore -n "__fish_securestore_using_subcommand key; and __fish_seen_subcommand_from rotate" -l token-file -d 'File holding the project\'s access token (needed once the project is registered). Tokens are never taken on the command line, where other processes could see them' -r -F
complete -c securestore -n "__fish_securestore_using_subcommand key; and __fish_seen_subcommand_from rotate" -l daemon-uid -d 'The uid the daemon must run as [default: this user\'s uid]. Root is always accepted. Before sending anything, the tool asks the kernel who is listening on the socket and refuses anyone else (exit 3): name a system-wide daemon\'s dedicated uid here' -r
complete -c securestore -n "__fish_securestore_using_subcommand key; and __fish_seen_subcommand_from rotate" -l service -d 'The keychainService namespace inside the project [default: app]' -r
complete -c securestore -n "__fish_securestore_using_subcommand key; and __fish_seen_subcommand_from rotate" -l timeout -d 'Seconds to wait for the daemon' -r
complete -c securestore -n "__fish_securestore_using_subcommand key; and __fish_seen_subcommand_from rotate" -s h -l help -d 'Print help'
complete -c securestore -n "__fish_securestore_using_subcommand key; and __fish_seen_subcommand_from help" -f -a "rotate" -d 'Replace the master key: the data keys are wrapped again under a new key and the old key file is overwritten; crash-safe at every step'
complete -c securestore -n "__fish_securestore_using_subcommand key; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c securestore -n "__fish_securestore_using_subcommand help; and not __fish_seen_subcommand_from set get delete contains list watch export import clear project device key help" -f -a "set" -d 'Store VALUE under KEY. Without VALUE, reads it from stdin (one trailing newline is dropped)'
complete -c securestore -n "__fish_securestore_using_subcommand help; and not __fish_seen_subcommand_from set get delete contains list watch export import clear project device key help" -f -a "get" -d 'Print the value under KEY and a newline; exit 1 if there is none'
complete -c securestore -n "__fish_securestore_using_subcommand help; and not __fish_seen_subcommand_from set get delete contains list watch export import clear project device key help" -f -a "delete" -d 'Delete the item under KEY (deleting a missing item succeeds)'
complete -c securestore -n "__fish_securestore_using_subcommand help; and not __fish_seen_subcommand_from set get delete contains list watch export import clear project device key help" -f -a "contains" -d 'Exit 0 if an item is stored under KEY, 1 if not; prints nothing. The value is never sent'
complete -c securestore -n "__fish_securestore_using_subcommand help; and not __fish_seen_subcommand_from set get delete contains list watch export import clear project device key help" -f -a "list" -d 'Print the keys of --service, sorted, one per line (or, with --services, the services that hold items)'
complete -c securestore -n "__fish_securestore_using_subcommand help; and not __fish_seen_subcommand_from set get delete contains list watch export import clear project device key help" -f -a "watch" -d 'Print one line per change of the project as it becomes durable, in commit order, until interrupted: `SEQ set|delete|clear SERVICE KEY` (`*` for all), or `lagged MISSED` when changes were dropped because this reader fell behind. Values are never printed. Without --service, every service is watched; with KEY, only that key'
complete -c securestore -n "__fish_securestore_using_subcommand help; and not __fish_seen_subcommand_from set get delete contains list watch export import clear project device key help" -f -a "export" -d 'Write a backup of the project\'s items (of --service, if given) to --output or stdout, sealed under a passphrase (Argon2id). Items of the *_THIS_DEVICE_ONLY classes are never exported. The passphrase is asked on the terminal (twice), or read from --passphrase-file'
complete -c securestore -n "__fish_securestore_using_subcommand help; and not __fish_seen_subcommand_from set get delete contains list watch export import clear project device key help" -f -a "import" -d 'Restore a backup (FILE, or stdin) into the project. The file is checked whole first: a wrong passphrase, a damaged file or a newer format imports nothing. Items that exist are kept unless --replace. Prints `added N replaced N skipped N`'
complete -c securestore -n "__fish_securestore_using_subcommand help; and not __fish_seen_subcommand_from set get delete contains list watch export import clear project device key help" -f -a "clear" -d 'Delete every item of --service (of every service with --all-services), and print how many there were. Needs --yes'
complete -c securestore -n "__fish_securestore_using_subcommand help; and not __fish_seen_subcommand_from set get delete contains list watch export import clear project device key help" -f -a "project" -d 'Manage the daemon\'s registered projects (as the daemon\'s own user or root)'
complete -c securestore -n "__fish_securestore_using_subcommand help; and not __fish_seen_subcommand_from set get delete contains list watch export import clear project device key help" -f -a "device" -d 'Signal or show the device state the accessibility classes depend on (as the daemon\'s own user or root). An embedding app signals from its lock callbacks; on a desktop, these do'
complete -c securestore -n "__fish_securestore_using_subcommand help; and not __fish_seen_subcommand_from set get delete contains list watch export import clear project device key help" -f -a "key" -d 'Manage the daemon\'s master key (as the daemon\'s own user or root)'
complete -c securestore -n "__fish_securestore_using_subcommand help; and not __fish_seen_subcommand_from set get delete contains list watch export import clear project device key help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c securestore -n "__fish_securestore_using_subcommand help; and __fish_seen_subcommand_from project" -f -a "add" -d 'Register project ID and print its new access token, once. Save it to a 0600 file'
complete -c securestore -n "__fish_securestore_using_subcommand help; and __fish_seen_subcommand_from project" -f -a "remove" -d 'Unregister project ID and delete all of its items (needs the project\'s --token-file if it is registered). Run it again to finish a removal that was interrupted'
complete -c securestore -n "__fish_securestore_using_subcommand help; and __fish_seen_subcommand_from project" -f -a "list" -d 'Print the registered project ids, one per line'
complete -c securestore -n "__fish_securestore_using_subcommand help; and __fish_seen_subcommand_from device" -f -a "status" -d 'Print the device state, e.g. `unlocked, passcode set`'
complete -c securestore -n "__fish_securestore_using_subcommand help; and __fish_seen_subcommand_from device" -f -a "lock" -d 'The device locked: WHEN_UNLOCKED* items become unavailable and their key is wiped from memory'
complete -c securestore -n "__fish_securestore_using_subcommand help; and __fish_seen_subcommand_from device" -f -a "unlock" -d 'The device unlocked. With --secret-file, the host\'s unlock secret: the first one given binds the keys of the classes that need an unlocked device, and every later unlock must give it'
complete -c securestore -n "__fish_securestore_using_subcommand help; and __fish_seen_subcommand_from device" -f -a "passcode" -d 'The passcode was set or removed. Removing it deletes every WHEN_PASSCODE_SET_THIS_DEVICE_ONLY item, durably'
complete -c securestore -n "__fish_securestore_using_subcommand help; and __fish_seen_subcommand_from key" -f -a "rotate" -d 'Replace the master key: the data keys are wrapped again under a new key and the old key file is overwritten; crash-safe at every step'
