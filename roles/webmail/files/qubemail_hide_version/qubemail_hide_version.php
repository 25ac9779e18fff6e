<?php
/**
 * qubemail_hide_version: Roundcube puts its version in every page it
 * renders (rcmail.set_env({..., "rcversion": 10605, ...})), whatever
 * display_product_info says, and nothing in Roundcube reads it but plugins,
 * none of which this appliance runs. Drop it from the page before it is sent,
 * so the login page does not tell a scanner which Roundcube release to try.
 * Installed by roles/webmail of qubemail.
 */
class qubemail_hide_version extends rcube_plugin
{
    public function init()
    {
        $this->add_hook('send_page', [$this, 'send_page']);
    }

    public function send_page($args)
    {
        $args['content'] = preg_replace('/"rcversion":\d+,?/', '', $args['content']);
        return $args;
    }
}
