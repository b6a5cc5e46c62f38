package org.iopersist.kernel.fs;

import java.util.Collection;
import java.util.Collections;
import java.util.TreeMap;

/** A directory of the object tree; children sorted by name, as {@code ls} shows them. */
public final class SysfsDir implements SysfsNode {
    private final String name;
    private final TreeMap<String, SysfsNode> children = new TreeMap<>(); // guarded by the tree's lock

    SysfsDir(final String name) {
        this.name = name;
    }

    @Override
    public String name() {
        return name;
    }

    SysfsNode child(final String childName) {
        return children.get(childName);
    }

    void put(final SysfsNode node) {
        children.put(node.name(), node);
    }

    SysfsNode remove(final String childName) {
        return children.remove(childName);
    }

    Collection<SysfsNode> children() {
        return Collections.unmodifiableCollection(children.values());
    }
}
