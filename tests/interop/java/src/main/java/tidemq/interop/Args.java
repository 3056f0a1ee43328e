package tidemq.interop;

import java.util.ArrayList;
import java.util.Collections;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/** "--name value", "--flag" and repeatable "--name v1 --name v2" options; unknown names are an error. */
final class Args {
    static final class UsageException extends RuntimeException {
        private static final long serialVersionUID = 1L;

        UsageException(String msg) {
            super(msg);
        }
    }

    private final Map<String, List<String>> values = new LinkedHashMap<String, List<String>>();
    private final Set<String> used = new HashSet<String>();

    Args(String[] argv, int from, Set<String> flags) {
        for (int i = from; i < argv.length; i++) {
            String a = argv[i];
            if (!a.startsWith("--") || a.length() == 2) {
                throw new UsageException("unexpected argument: " + a);
            }
            String name = a.substring(2);
            String value;
            int eq = name.indexOf('=');
            if (eq > 0) {
                value = name.substring(eq + 1);
                name = name.substring(0, eq);
            } else if (flags.contains(name)) {
                value = "true";
            } else {
                if (i + 1 >= argv.length) {
                    throw new UsageException("--" + name + " needs a value");
                }
                value = argv[++i];
            }
            List<String> list = values.get(name);
            if (list == null) {
                list = new ArrayList<String>();
                values.put(name, list);
            }
            list.add(value);
        }
    }

    String str(String name, String dflt) {
        used.add(name);
        List<String> list = values.get(name);
        return list == null ? dflt : list.get(list.size() - 1);
    }

    String req(String name) {
        String v = str(name, null);
        if (v == null) {
            throw new UsageException("--" + name + " is required");
        }
        return v;
    }

    List<String> all(String name) {
        used.add(name);
        List<String> list = values.get(name);
        return list == null ? Collections.<String>emptyList() : list;
    }

    int integer(String name, int dflt) {
        String v = str(name, null);
        try {
            return v == null ? dflt : Integer.parseInt(v);
        } catch (NumberFormatException e) {
            throw new UsageException("--" + name + " wants an integer, got " + v);
        }
    }

    long lng(String name, long dflt) {
        String v = str(name, null);
        try {
            return v == null ? dflt : Long.parseLong(v);
        } catch (NumberFormatException e) {
            throw new UsageException("--" + name + " wants an integer, got " + v);
        }
    }

    double dbl(String name, double dflt) {
        String v = str(name, null);
        try {
            return v == null ? dflt : Double.parseDouble(v);
        } catch (NumberFormatException e) {
            throw new UsageException("--" + name + " wants a number, got " + v);
        }
    }

    boolean bool(String name, boolean dflt) {
        String v = str(name, null);
        return v == null ? dflt : Boolean.parseBoolean(v);
    }

    /** Call after reading every option: rejects misspelt ones. */
    void checkAllUsed() {
        for (String name : values.keySet()) {
            if (!used.contains(name)) {
                throw new UsageException("unknown option --" + name);
            }
        }
    }
}
