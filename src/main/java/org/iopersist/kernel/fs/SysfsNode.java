package org.iopersist.kernel.fs;

/**
 * A node of the kernel's object tree: a directory, or an attribute file whose contents are
 * produced on read and whose writes go to its owner.
 */
public sealed interface SysfsNode permits SysfsDir, SysfsAttribute {
    String name();
}
